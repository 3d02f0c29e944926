"""Distillation from a real feature store made by a real extraction run."""

from __future__ import annotations

import pytest

from db.store import Store
from engine.extract import extract_job
from engine.runner import run_job
from engine.train import train_job

TASKS = ["007bbfb7", "00d62c1b", "017c7c7b"]


@pytest.fixture
def store_name(workspace):
    config = {"dataset": "arc1/train", "teacher": "builtin", "teacher_options": {"dim": 32},
              "store": "small", "task_ids": TASKS, "batch_size": 8}
    with Store.open(workspace) as store:
        run = store.create_run("extract", "extract", config)
    assert run_job(workspace, run.id, extract_job) == 0
    return "small"


def _train(workspace, config):
    with Store.open(workspace) as store:
        run = store.create_run("t", "train", config)
    code = run_job(workspace, run.id, train_job)
    with Store.open_readonly(workspace) as store:
        return code, store.get_run(run.id), store


@pytest.mark.parametrize("student", ["standalone", "sage-seed"])
def test_both_students_distil_from_the_store(workspace, store_name, student):
    config = {"task_ids": TASKS, "max_grid": None, "max_tasks": None, "features": store_name,
              "student": student, "batch_size": 4, "max_steps": 3, "val_tasks": 1, "val_every_steps": 3}
    code, run, _ = _train(workspace, config)
    assert code == 0, run.message
    with Store.open_readonly(workspace) as store:
        mse = store.read_metrics_after(run.id, "loss_mse").values
        cosine = store.read_metrics_after(run.id, "loss_cosine").values
        assert len(mse) == len(cosine) == 3 and all(v > 0 for v in mse)
        assert store.read_metrics_after(run.id, "val_pass2").steps == [3]


def test_a_store_missing_examples_is_refused_with_what_to_do(workspace, store_name):
    config = {"task_ids": TASKS + ["025d127b"], "max_grid": None, "max_tasks": None,
              "features": store_name, "max_steps": 2}
    code, run, _ = _train(workspace, config)
    assert code == 1 and run.status == "failed"
    assert "lacks" in run.message and "sage-engine extract" in run.message


def test_a_store_from_another_dataset_is_refused(workspace, store_name):
    config = {"dataset": "arc1/eval", "max_tasks": 2, "max_grid": None, "features": store_name,
              "max_steps": 2}
    code, run, _ = _train(workspace, config)
    assert code == 1 and "was extracted from 'arc1/train'" in run.message
