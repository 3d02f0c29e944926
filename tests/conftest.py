"""Shared fixtures: a real workspace folder with a real SQLite database."""

from __future__ import annotations

import os

import pytest

from db.store import Store

# Keep the suite's torch to the two cores the CI machine has, and never reach for a GPU.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def workspace(tmp_path):
    path = tmp_path / "workspace"
    Store.open(path).close()
    return path


@pytest.fixture
def store(workspace):
    with Store.open(workspace) as opened:
        yield opened
