"""Engine test settings: small enough to train in seconds on a 2-core CPU."""

from __future__ import annotations

import pytest

FAST_TRAIN = {
    "max_tasks": 3, "max_grid": 6, "batch_size": 4, "max_steps": 6, "epochs": 50,
    "val_tasks": 1, "val_every_steps": 3, "checkpoint_every_steps": 3, "warmup_steps": 2,
}


@pytest.fixture
def fast_train_config():
    return dict(FAST_TRAIN)
