"""Stop, kill -9 and resume with real engine processes: the resumed run logs the same
losses, step for step, as a run never interrupted, and no step appears twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from db.processes import effective_status, signal_engine
from db.store import Store
from engine.runner import run_job
from engine.train import train_job

CONFIG = {"max_tasks": 4, "max_grid": 8, "batch_size": 8, "max_steps": 30, "epochs": 100,
          "val_tasks": 1, "val_every_steps": 10, "checkpoint_every_steps": 4, "warmup_steps": 3,
          "augment": True}


def _engine(workspace, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", *args, "--workspace", str(workspace)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _logged_steps(workspace, run_id) -> int:
    with Store.open_readonly(workspace) as store:
        steps = store.read_metrics_after(run_id, "loss").steps
    return steps[-1] if steps else 0


def _wait_for_step(workspace, run_id, step, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while _logged_steps(workspace, run_id) < step:
        assert proc.poll() is None, f"engine exited early with code {proc.returncode}"
        assert time.monotonic() < deadline, f"run {run_id} did not reach step {step}"
        time.sleep(0.05)


def _run(workspace, run_id) -> object:
    with Store.open_readonly(workspace) as store:
        return store.get_run(run_id)


@pytest.mark.slow
def test_stopped_killed_and_resumed_run_matches_an_uninterrupted_one(workspace):
    with Store.open(workspace) as store:
        reference = store.create_run("reference", "train", CONFIG)
        interrupted = store.create_run("interrupted", "train", CONFIG)
    assert run_job(workspace, reference.id, train_job) == 0

    # 1. Stop (SIGTERM to the verified engine) mid-run: the step finishes, a checkpoint is written.
    proc = _engine(workspace, "start", str(interrupted.id))
    _wait_for_step(workspace, interrupted.id, 5, proc)
    assert signal_engine(_run(workspace, interrupted.id), signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    run = _run(workspace, interrupted.id)
    assert run.status == "stopped", run.message
    stopped_at = _logged_steps(workspace, interrupted.id)
    assert stopped_at < CONFIG["max_steps"], "the run finished before it could be stopped"
    with Store.open_readonly(workspace) as store:
        assert store.checkpoints(interrupted.id)[-1].step == stopped_at

    # 2. Resume, then kill -9 mid-run: no checkpoint on the way out, status left "running".
    proc = _engine(workspace, "resume", str(interrupted.id))
    _wait_for_step(workspace, interrupted.id, stopped_at + 7, proc)
    # Kill between two checkpoints, so rows past the last one exist and must be replaced.
    while _logged_steps(workspace, interrupted.id) % CONFIG["checkpoint_every_steps"] == 0:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    run = _run(workspace, interrupted.id)
    assert run.status == "running" and effective_status(run) == "crashed"
    with Store.open_readonly(workspace) as store:
        last_checkpoint = store.checkpoints(interrupted.id)[-1].step
    # Rows up to the checkpoint were flushed before it was written; rows after it, if
    # any, are replaced by the resumed engine.
    assert _logged_steps(workspace, interrupted.id) >= last_checkpoint

    # 3. Resume from the last checkpoint to the end.
    proc = _engine(workspace, "resume", str(interrupted.id))
    assert proc.wait(timeout=180) == 0
    assert _run(workspace, interrupted.id).status == "finished"

    with Store.open_readonly(workspace) as store:
        for key in ("loss", "loss_task", "loss_task_cells", "train_cell_acc", "grad_norm", "lr"):
            expected = store.read_metrics_after(reference.id, key)
            resumed = store.read_metrics_after(interrupted.id, key)
            assert resumed.steps == expected.steps == list(range(1, CONFIG["max_steps"] + 1)), key
            assert resumed.values == expected.values, key  # bit for bit on CPU
        events = store.events(interrupted.id)
    kinds = [e.kind for e in events]
    assert kinds.count("resumed") >= 2 and "stopped" in kinds
    assert "metric rows after it replaced" in [e for e in events if e.kind == "resumed"][-1].message
