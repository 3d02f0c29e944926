"""Training under torchrun with DDP: two CPU processes (gloo) follow the same loss
trajectory as one process with the same global batch; rank 0 alone writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from db.store import Store
from engine.runner import run_job
from engine.train import train_job

CONFIG = {"max_tasks": 4, "max_grid": 6, "batch_size": 8, "max_steps": 6, "epochs": 50,
          "val_tasks": 0, "checkpoint_every_steps": 3, "warmup_steps": 2}


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(workspace):
    with Store.open(workspace) as store:
        single = store.create_run("single", "train", CONFIG)
        double = store.create_run("ddp", "train", CONFIG)
    assert run_job(workspace, single.id, train_job) == 0

    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node=2", "-m", "engine", "start", str(double.id),
         "--workspace", str(workspace)], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]

    with Store.open_readonly(workspace) as store:
        run = store.get_run(double.id)
        assert run.status == "finished"
        # Losses and gradient norms match; cell-level rates are averaged per rank, so they
        # may differ slightly from one process pooling every cell of the batch.
        for key in ("loss", "loss_task", "grad_norm", "lr"):
            one = store.read_metrics_after(single.id, key)
            two = store.read_metrics_after(double.id, key)
            assert two.steps == one.steps == list(range(1, 7)), key
            assert two.values == pytest.approx(one.values, rel=1e-4, abs=1e-6), key
        # Rank 0 alone wrote: one "started" event, one row per step, one set of checkpoints.
        assert [e.kind for e in store.events(double.id)].count("started") == 1
        assert [c.step for c in store.checkpoints(double.id)] == [3, 6]
    assert "2 processes" in (workspace / run.log_path).read_text()
