"""`sage-engine` as a user types it: clear messages and non-zero exits for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from db.store import Store


def engine(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["train", "--set", "lr=fast"], "lr: expected float"),
    (["train", "--set", "epochs=0"], "epochs: must be at least 1"),
    (["train", "--set", "colour=red"], "colour: unknown setting"),
    (["train", "--set", "lr"], "written key=value"),
    (["train", "--config", "/no/such/file.json"], "cannot read /no/such/file.json"),
    (["train", "--set", "student=sage-seed"], "pass a feature store"),
    (["resume", "7"], "no run 7"),
    (["stop", "7"], "no run 7"),
    (["extract", "--teacher-option", "oops"], "KEY=VALUE"),
])
def test_bad_input_is_one_clear_line_and_exit_2(workspace, args, message):
    result = engine(*args, "--workspace", str(workspace))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_workspace_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("")
    result = engine("runs", "--workspace", str(path))
    assert result.returncode == 2 and "is a file, not a folder" in result.stderr


def test_runs_json_lists_runs_with_effective_status(workspace):
    with Store.open(workspace) as store:
        run = store.create_run("a", "train", {"lr": 0.01})
        store.mark_running(run.id, pid=999_999, host="elsewhere", proc_start_time=1.0)
        store.update_run(run.id, heartbeat_at=1.0)  # silent for decades: crashed
    result = engine("runs", "--workspace", str(workspace), "--json")
    assert result.returncode == 0
    [listed] = json.loads(result.stdout)
    assert (listed["id"], listed["name"], listed["status"], listed["config"]) == (run.id, "a", "crashed", {"lr": 0.01})


def test_runs_table_shows_the_device_and_why_a_run_failed(workspace):
    with Store.open(workspace) as store:
        run = store.create_run("oom", "train", {})
        store.update_run(run.id, status="failed", device="cuda:0", message="CUDA out of memory")
    result = engine("runs", "--workspace", str(workspace))
    assert result.returncode == 0
    header, line = result.stdout.splitlines()[:2]
    assert "device" in header and "reason" in header
    assert "cuda:0" in line and line.endswith("CUDA out of memory")


@pytest.mark.slow
def test_check_answers_json_for_the_dashboard():
    good = engine("check", "--config-json", '{"lr": "0.001"}')
    assert (good.returncode, json.loads(good.stdout)) == (0, {"ok": True, "warnings": []})
    bad = engine("check", "--config-json", '{"batch_size": "many"}')
    assert bad.returncode == 1
    assert json.loads(bad.stdout) == {"ok": False, "field": "batch_size", "message": "expected int, got 'many'"}
    teacher = engine("check", "--kind", "extract", "--config-json",
                     '{"teacher": "hf", "teacher_options": {"model_path": "/no/model"}}')
    answer = json.loads(teacher.stdout)
    assert teacher.returncode == 1 and answer["field"] == "teacher" and "/no/model" in answer["message"]


def test_check_warns_when_the_evaluation_set_overlaps_the_training_tasks():
    """arc2/train holds 376 of the 400 ARC-AGI-1 evaluation tasks, answers included."""
    answer = json.loads(engine("check", "--config-json", json.dumps(
        {"dataset": "arc2/train", "max_tasks": None, "max_grid": None,
         "eval_dataset": "arc1/eval"})).stdout)
    assert answer["ok"] is True
    [warning] = answer["warnings"]
    assert warning.startswith("376 of the 400 arc1/eval tasks") and "arc2/train" in warning
    clean = json.loads(engine("check", "--config-json", json.dumps(
        {"dataset": "arc1/train", "eval_dataset": "arc1/eval"})).stdout)
    assert clean == {"ok": True, "warnings": []}


@pytest.mark.slow
def test_train_detach_returns_at_once_and_the_run_trains(workspace):
    result = engine("train", "--workspace", str(workspace), "--detach", "--set", "max_steps=2",
                    "--set", "max_tasks=2", "--set", "max_grid=5", "--set", "batch_size=2")
    assert result.returncode == 0, result.stderr
    assert "started in the background" in result.stdout
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with Store.open_readonly(workspace) as store:
            run = store.list_runs()[0]
        if run.status in ("finished", "failed"):
            break
        time.sleep(0.5)
    assert run.status == "finished", run.message
    assert "run 1 finished" in (workspace / run.log_path).read_text()
