"""One run, one engine: real engine processes racing for a run, frozen with SIGSTOP,
and the command line's answers around them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from db.lease import lease_holder
from db.processes import effective_status
from db.store import Store
from sage_tui import control

CONFIG = {"max_tasks": 3, "max_grid": 6, "batch_size": 4, "max_steps": 400, "epochs": 1000,
          "val_tasks": 1, "val_every_steps": 1000, "checkpoint_every_steps": 5, "warmup_steps": 2}


def engine(workspace, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "engine", *args, "--workspace", str(workspace)],
                          capture_output=True, text=True, timeout=timeout)


def spawn(workspace, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", *args, "--workspace", str(workspace)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout=90, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def get_run(workspace, run_id):
    with Store.open_readonly(workspace) as store:
        return store.get_run(run_id)


def logged_steps(workspace, run_id):
    with Store.open_readonly(workspace) as store:
        return store.read_metrics_after(run_id, "loss").steps


@pytest.mark.slow
def test_two_resumes_at_once_give_one_engine_and_a_one_line_refusal(workspace):
    with Store.open(workspace) as store:
        run = store.create_run("r", "train", CONFIG)
        store.finish_run(run.id, "stopped", "stopped on request")
    first, second = spawn(workspace, "resume", str(run.id)), spawn(workspace, "resume", str(run.id))
    try:
        wait_for(lambda: first.poll() is not None or second.poll() is not None, what="a refusal")
        refused, winner = (first, second) if first.poll() is not None else (second, first)
        stderr = refused.stderr.read()
        assert refused.returncode == 2, stderr
        assert f"engine pid {winner.pid}" in stderr or f"(pid {winner.pid})" in stderr, stderr
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
        wait_for(lambda: len(logged_steps(workspace, run.id)) >= 3, what="training")
        assert winner.poll() is None and lease_holder(workspace, run.id) == winner.pid
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()
    assert effective_status(get_run(workspace, run.id)) == "crashed"


@pytest.mark.slow
def test_a_frozen_engine_is_unresponsive_and_keeps_its_run(workspace):
    """Today: `crashed` after 30 s, and the dashboard's `r` starts a second engine."""
    with Store.open(workspace) as store:
        run = store.create_run("r", "train", CONFIG)
    proc = spawn(workspace, "start", str(run.id))
    try:
        wait_for(lambda: len(logged_steps(workspace, run.id)) >= 3, what="training")
        os.kill(proc.pid, signal.SIGSTOP)
        with Store.open(workspace) as store:  # as if its last heartbeat was a minute ago
            store.update_run(run.id, heartbeat_at=time.time() - 60)
        assert effective_status(get_run(workspace, run.id)) == "unresponsive"
        answer = control.resume_run(workspace, run.id)
        assert "unresponsive" in answer and f"pid {proc.pid}" in answer
        refused = engine(workspace, "resume", str(run.id))
        assert refused.returncode == 2 and f"pid {proc.pid}" in refused.stderr
        with pytest.raises(Exception, match=f"pid {proc.pid}"):
            control.delete_run(workspace, run.id)
        # Even a second engine that skips every rule cannot take the run.
        from db.lease import LeaseHeld
        from engine.runner import run_job
        from engine.train import train_job
        with pytest.raises(LeaseHeld, match=f"engine pid {proc.pid}"):
            run_job(workspace, run.id, train_job, resumed=True)
        os.kill(proc.pid, signal.SIGCONT)
        wait_for(lambda: effective_status(get_run(workspace, run.id)) == "running", what="running again")
        assert "stopping run" in control.stop_run(workspace, run.id)
        assert proc.wait(timeout=60) == 0
    finally:
        os.kill(proc.pid, signal.SIGCONT) if proc.poll() is None else None
        proc.kill()
        proc.wait()
    steps = logged_steps(workspace, run.id)
    assert steps == list(range(1, len(steps) + 1))
    assert get_run(workspace, run.id).status == "stopped"


def test_resume_of_a_finished_run_says_nothing_to_resume_and_keeps_its_checkpoint(workspace):
    with Store.open(workspace) as store:
        run = store.create_run("r", "train", CONFIG)
        checkpoint = store.add_checkpoint(run.id, 6, 1.0, "runs/0001/checkpoints/step_00000006.pt", 1, {}, "final")
        store.finish_run(run.id, "finished")
    result = engine(workspace, "resume", str(run.id))
    assert result.returncode == 2 and "nothing to resume" in result.stderr
    with Store.open_readonly(workspace) as store:
        assert [c.id for c in store.checkpoints(run.id)] == [checkpoint]
        assert store.get_run(run.id).status == "finished"


def test_reading_commands_never_create_a_workspace(tmp_path):
    typo = tmp_path / "typo"
    for args in (["runs"], ["stop", "1"], ["resume", "1"], ["export", "--run", "1"]):
        result = engine(typo, *args)
        assert result.returncode == 2 and "no SAGE TUI workspace" in result.stderr, result.stderr
    # A command that creates runs creates its workspace only for settings that will run.
    assert engine(typo, "train", "--set", "lr=nan").returncode == 2
    assert not typo.exists()


def test_runs_piped_into_head_ends_quietly(workspace):
    with Store.open(workspace) as store:
        for index in range(3000):
            store.create_run(f"run-{index}", "train", {})
    result = subprocess.run(f"{sys.executable} -m engine runs --workspace {workspace} | head -1",
                            shell=True, capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("  id") and result.stderr == ""


def test_check_takes_a_workspace_and_checks_what_depends_on_it(workspace):
    features = engine(workspace, "check", "--config-json", json.dumps({"features": "nope-store"}))
    assert features.returncode == 1
    assert json.loads(features.stdout)["field"] == "features"
    assert str(workspace) in json.loads(features.stdout)["message"]
    device = engine(workspace, "check", "--config-json", json.dumps({"device": "cuda:3"}))
    answer = json.loads(device.stdout)
    assert (device.returncode, answer["field"]) == (1, "device") and "cuda:3" in answer["message"]
    typed = engine(workspace, "check", "--kind", "extract", "--config-json", '{"batch_size": "8"}')
    assert (typed.returncode, json.loads(typed.stdout)) == (0, {"ok": True, "warnings": []}), typed.stderr
    wrong = engine(workspace, "check", "--kind", "extract", "--config-json", '{"batch_size": [8]}')
    assert json.loads(wrong.stdout)["field"] == "batch_size" and "Traceback" not in wrong.stderr
    dataset = engine(workspace, "check", "--kind", "eval", "--config-json", '{"dataset": "arc3/foo"}')
    assert json.loads(dataset.stdout)["field"] == "dataset"
    eval_dataset = engine(workspace, "check", "--config-json", '{"eval_dataset": "/no/tasks"}')
    assert json.loads(eval_dataset.stdout)["field"] == "eval_dataset"


def test_a_feature_store_that_lacks_examples_is_caught_by_check(workspace, tmp_path):
    """The store is made from 2 tasks; the run would read 4."""
    made = engine(workspace, "extract", "--store", "two", "--max-tasks", "2", "--dataset", "arc1/train",
                  timeout=300)
    assert made.returncode == 0, made.stderr
    check = engine(workspace, "check", "--config-json",
                   json.dumps({"features": "two", "max_tasks": 4, "max_grid": None}))
    answer = json.loads(check.stdout)
    assert (check.returncode, answer["field"]) == (1, "features") and "lacks" in answer["message"], answer


def test_extract_with_a_teacher_but_no_model_folder_is_a_usage_error(workspace):
    result = engine(workspace, "extract", "--teacher", "gr00t")
    assert result.returncode == 2 and "model_path" in result.stderr and "Traceback" not in result.stderr


def test_train_creates_a_missing_workspace_and_says_so(tmp_path):
    fresh = tmp_path / "fresh"
    result = engine(fresh, "train", "--set", "max_steps=1", "--set", "max_tasks=1", "--set", "max_grid=6",
                    "--set", "val_every_steps=1000")
    assert result.returncode == 0, result.stderr
    assert f"created workspace {fresh}" in result.stderr and (fresh / "sage.db").exists()
