"""Evaluation with test-time training: task by task into the database, never reading a
test output, stoppable, resumed at the next unfinished task, in parallel processes."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
import torch

from db.store import Store
from engine.arc import load_dataset
from engine.evaluate import eval_job
from engine.runner import run_job


def write_tasks(folder, count=3, seed=0, changed_answer=False):
    """Tiny tasks (every non-zero cell becomes 4) as a folder of task JSON files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        def pair():
            grid = rng.integers(0, 3, size=(4, 4))
            return {"input": grid.tolist(), "output": np.where(grid > 0, 4, 0).tolist()}
        task = {"train": [pair() for _ in range(3)], "test": [pair()]}
        if changed_answer:
            task["test"][0]["output"] = [[7] * 3] * 2     # another answer, another shape
        (folder / f"task{n:02d}.json").write_text(json.dumps(task))
    return folder


def ttt_config(folder, **extra):
    return {"dataset": str(folder), "ttt_steps": 8, "workers": 1, "seed": 0,
            "checkpoint_id": None, "source_run_id": None, **extra}


def evaluate(workspace, config):
    with Store.open(workspace) as store:
        run = store.create_run("ttt", "eval", config)
    code = run_job(workspace, run.id, eval_job)
    with Store.open_readonly(workspace) as store:
        evaluation_id = store.evaluation_of_run(run.id)
        return (code, store.get_run(run.id), store.get_evaluation(evaluation_id),
                store.predictions(evaluation_id), store.read_metrics_after(run.id, "ttt_loss"))


def test_every_task_is_scored_and_stored(workspace, tmp_path):
    folder = write_tasks(tmp_path / "tasks")
    code, run, evaluation, predictions, losses = evaluate(workspace, ttt_config(folder))
    assert code == 0 and run.status == "finished"
    tasks = load_dataset(str(folder)).tasks
    assert evaluation.n_tasks == 3 and len(predictions) == 3
    for p in predictions:
        expected = next(t for t in tasks if t.id == p.task_id).test[0].output.tolist()
        assert p.expected == expected and p.attempt_2 is not None and p.attempt_1 != p.attempt_2
        assert p.correct_1 == (p.attempt_1 == expected)
    assert losses.steps == [1, 2, 3]
    assert evaluation.summary["n_tasks_planned"] == 3
    assert run.device == ("cuda:0" if torch.cuda.is_available() else "cpu")   # "auto", resolved


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_gpu_asked_for_where_there_is_none_fails_the_run_saying_what_to_do(workspace, tmp_path):
    folder = write_tasks(tmp_path / "tasks", count=1)
    with Store.open(workspace) as store:
        run = store.create_run("ttt", "eval", ttt_config(folder, device="cuda"))
    assert run_job(workspace, run.id, eval_job) != 0
    with Store.open_readonly(workspace) as store:
        failed = store.get_run(run.id)
        assert store.evaluation_of_run(run.id) is None   # no task started
    assert failed.status == "failed" and "use device=cpu or auto" in failed.message


def test_test_outputs_never_reach_the_student(workspace, tmp_path):
    """Change every test output: the attempts and the training losses stay bit-identical."""
    original = evaluate(workspace, ttt_config(write_tasks(tmp_path / "a")))
    changed = evaluate(workspace, ttt_config(write_tasks(tmp_path / "b", changed_answer=True)))
    assert [p.attempt_1 for p in original[3]] == [p.attempt_1 for p in changed[3]]
    assert [p.attempt_2 for p in original[3]] == [p.attempt_2 for p in changed[3]]
    assert original[4].values == changed[4].values
    assert [p.expected for p in original[3]] != [p.expected for p in changed[3]]


def test_the_colour_head_reaches_the_student_and_the_summary(workspace, tmp_path):
    folder = write_tasks(tmp_path / "tasks")
    # Without the rule student, which is confident on these tasks and would leave one
    # network one step (the head starts at zero, so its first loss is the plain one).
    plain = evaluate(workspace, ttt_config(folder, ttt_rule=False))
    with_head = evaluate(workspace, ttt_config(folder, ttt_colour_head=8, ttt_rule=False))
    assert with_head[0] == 0
    assert "colour-equivariant head (8 wide)" in with_head[2].summary["test_time_training"]
    assert "colour-equivariant" not in plain[2].summary["test_time_training"]
    assert with_head[4].values != plain[4].values     # another network learned the tasks


def test_the_changed_cell_weight_reaches_the_student_and_the_summary(workspace, tmp_path):
    folder = write_tasks(tmp_path / "tasks")
    plain = evaluate(workspace, ttt_config(folder))
    weighted = evaluate(workspace, ttt_config(folder, ttt_changed_weight=4.0))
    assert "differ from the input weighing 4x" in weighted[2].summary["test_time_training"]
    assert "weighing" not in plain[2].summary["test_time_training"]
    assert weighted[4].values != plain[4].values     # another loss trained the student


def test_bf16_training_reaches_the_student_and_the_summary(workspace, tmp_path):
    folder = write_tasks(tmp_path / "tasks")
    plain = evaluate(workspace, ttt_config(folder, ttt_precision="fp32"))
    bf16 = evaluate(workspace, ttt_config(folder, ttt_precision="bf16"))
    assert bf16[0] == 0 and "trained in bf16" in bf16[2].summary["test_time_training"]
    assert "bf16" not in plain[2].summary["test_time_training"]
    assert bf16[4].values != plain[4].values     # other arithmetic, other losses


def test_the_rule_student_answers_first_and_says_so(workspace, tmp_path):
    folder = write_tasks(tmp_path / "tasks")      # "every non-zero cell becomes 4": one question
    ruled = evaluate(workspace, ttt_config(folder))
    networks = evaluate(workspace, ttt_config(folder, ttt_rule=False))
    assert all(p.correct_1 for p in ruled[3]) and not all(p.correct_1 for p in networks[3])
    assert "the rule student answering first" in ruled[2].summary["test_time_training"]
    assert "rule student" not in networks[2].summary["test_time_training"]
    with Store.open_readonly(workspace) as store:
        assert store.read_metrics_after(ruled[1].id, "ttt_rule").values == [1.0, 1.0, 1.0]
        assert store.read_metrics_after(networks[1].id, "ttt_rule").values == [0.0, 0.0, 0.0]
        told = [e.message for e in store.events(ruled[1].id) if e.kind == "task"]
    assert len(told) == 3 and all("question deep explains the demonstrations" in m for m in told)


def test_a_stopped_evaluation_resumes_at_the_next_unfinished_task(workspace, tmp_path):
    folder = write_tasks(tmp_path / "tasks", count=4)
    with Store.open(workspace) as store:
        # Without the rule student, so that every task trains all three students and
        # takes long enough for the stop to arrive before the last one.
        run = store.create_run("ttt", "eval", ttt_config(folder, ttt_steps=40, ttt_rule=False))

    def stop_after_first_task():
        with Store.open(workspace) as store:
            deadline = time.time() + 120
            while time.time() < deadline:
                evaluation_id = store.evaluation_of_run(run.id)
                if evaluation_id is not None and store.evaluated_task_ids(evaluation_id):
                    store.request_stop(run.id)
                    return
                time.sleep(0.05)

    stopper = threading.Thread(target=stop_after_first_task)
    stopper.start()
    assert run_job(workspace, run.id, eval_job) == 0
    stopper.join()
    with Store.open_readonly(workspace) as store:
        assert store.get_run(run.id).status == "stopped"
        evaluation_id = store.evaluation_of_run(run.id)
        done_before = store.evaluated_task_ids(evaluation_id)
    assert 1 <= len(done_before) < 4

    assert run_job(workspace, run.id, eval_job, resumed=True) == 0
    with Store.open_readonly(workspace) as store:
        assert store.get_run(run.id).status == "finished"
        assert store.evaluation_of_run(run.id) == evaluation_id
        assert sorted(store.evaluated_task_ids(evaluation_id)) == [f"task{n:02d}" for n in range(4)]
        assert len(store.predictions(evaluation_id)) == 4
        assert store.get_evaluation(evaluation_id).n_tasks == 4


@pytest.mark.slow
def test_the_command_line_trains_tasks_in_parallel_processes(workspace, tmp_path):
    folder = write_tasks(tmp_path / "tasks", count=4)
    result = subprocess.run(
        [sys.executable, "-m", "engine", "eval", "--dataset", str(folder), "--ttt-steps", "5",
         "--workers", "2", "--workspace", str(workspace)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "with test-time training" in result.stdout and "pass@2" in result.stdout
    with Store.open_readonly(workspace) as store:
        [evaluation] = store.evaluations()
        assert evaluation.n_tasks == 4 and evaluation.checkpoint_id is None
        events = [e.message for e in store.events(evaluation.run_id)]
    assert any("2 worker process(es)" in m for m in events)


def parallel_eval_under_way(workspace, folder):
    """An engine evaluating 4 tasks with 2 workers, once its first task is stored: then both
    workers hold a task. Returns the engine's Popen and its worker processes."""
    engine = subprocess.Popen(
        [sys.executable, "-m", "engine", "eval", "--dataset", str(folder), "--ttt-steps", "100000",
         "--ttt-seconds", "4", "--workers", "2", "--workspace", str(workspace)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, done = time.time() + 120, []
    while not done and time.time() < deadline:
        time.sleep(0.2)
        with Store.open_readonly(workspace) as store:
            runs = store.list_runs()
            evaluation_id = store.evaluation_of_run(runs[0].id) if runs else None
            done = store.evaluated_task_ids(evaluation_id) if evaluation_id else []
    workers = [child for child in psutil.Process(engine.pid).children()
               if "spawn_main" in " ".join(child.cmdline())]
    assert done and len(workers) == 2, "no task finished"
    return engine, workers


def kill_all(engine, workers):
    if engine.poll() is None:
        engine.kill()
    for worker in workers:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.kill()


@pytest.mark.slow
def test_a_worker_killed_mid_task_fails_the_run_saying_so_and_resume_finishes_it(workspace, tmp_path):
    """The kernel's out-of-memory killer or a kill -9 can end a worker at any time: the run
    must end failed with a reason, not wait forever for the task that worker held."""
    engine, workers = parallel_eval_under_way(workspace, write_tasks(tmp_path / "tasks", count=4))
    try:
        workers[0].kill()
        _, stderr = engine.communicate(timeout=60)
    finally:
        kill_all(engine, workers)
    assert engine.returncode == 1 and "Traceback" not in stderr
    with Store.open_readonly(workspace) as store:
        [run] = store.list_runs()
        assert run.status == "failed"
        assert "worker process ended abruptly" in run.message and "resume" in run.message
        done = store.evaluated_task_ids(store.evaluation_of_run(run.id))
    assert len(done) < 4

    resumed = subprocess.run([sys.executable, "-m", "engine", "resume", str(run.id), "--workspace", str(workspace)],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    with Store.open_readonly(workspace) as store:
        assert store.get_run(run.id).status == "finished"
        assert sorted(store.evaluated_task_ids(store.evaluation_of_run(run.id))) == [f"task{n:02d}" for n in range(4)]


@pytest.mark.slow
def test_workers_end_with_their_engine_when_it_is_killed(workspace, tmp_path):
    """kill -9 of the engine: its workers must not train on for nobody (the task budget is
    far longer than the wait) nor linger afterwards, holding memory."""
    folder = write_tasks(tmp_path / "tasks", count=4)
    engine, workers = parallel_eval_under_way(workspace, folder)
    try:
        engine.kill()
        engine.wait(timeout=10)
        _, alive = psutil.wait_procs(workers, timeout=10)
    finally:
        kill_all(engine, workers)
    assert alive == []


def test_only_the_named_tasks_are_evaluated(workspace, tmp_path):
    folder = write_tasks(tmp_path / "tasks", count=4)
    code, _, evaluation, predictions, _ = evaluate(workspace, ttt_config(folder, task_ids=["task03", "task01"]))
    assert code == 0 and evaluation.n_tasks == 2
    assert sorted(p.task_id for p in predictions) == ["task01", "task03"]


def test_unknown_task_ids_are_refused_before_a_run_exists(workspace, tmp_path):
    folder = write_tasks(tmp_path / "tasks", count=2)
    result = subprocess.run(
        [sys.executable, "-m", "engine", "eval", "--dataset", str(folder), "--task-ids", "task01,nope",
         "--workspace", str(workspace)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "task ids not in the dataset: nope" in result.stderr
    with Store.open_readonly(workspace) as store:
        assert store.list_runs() == []


def test_bad_budgets_are_refused_on_the_command_line(workspace):
    result = subprocess.run(
        [sys.executable, "-m", "engine", "eval", "--ttt-seconds", "nan", "--workspace", str(workspace)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "ttt_seconds" in result.stderr and "Traceback" not in result.stderr


def test_a_student_that_reads_demonstrations_is_fine_tuned_per_task(workspace, tmp_path, fast_train_config):
    """From a standalone checkpoint: a copy is fine-tuned on each task's leave-one-out
    queries, then answers with two distinct voted attempts."""
    from engine.train import train_job

    with Store.open(workspace) as store:
        run = store.create_run("t", "train", {**fast_train_config, "max_steps": 2})
    assert run_job(workspace, run.id, train_job) == 0
    with Store.open_readonly(workspace) as store:
        checkpoint = store.checkpoints(run.id)[-1]
    folder = write_tasks(tmp_path / "tasks", count=2)
    code, run_row, evaluation, predictions, losses = evaluate(
        workspace, ttt_config(folder, ttt_steps=3, checkpoint_id=checkpoint.id, source_run_id=run.id))
    assert code == 0, run_row.message
    assert evaluation.n_tasks == 2 and evaluation.checkpoint_id == checkpoint.id
    assert "fine-tuned per task on leave-one-out queries" in evaluation.summary["test_time_training"]
    assert all(p.attempt_1 != p.attempt_2 for p in predictions)
    assert len(losses.values) == 2 and all(v == v for v in losses.values)
    assert "baseline_pass2" in evaluation.summary    # the same summary as any evaluation


def test_mps_is_seen_running_by_its_control_pipe(tmp_path, monkeypatch):
    """Workers sharing a GPU get a warning to start MPS unless its control pipe exists."""
    from engine.ttt import mps_running

    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    assert not mps_running()
    (tmp_path / "control").touch()
    assert mps_running()


def test_auto_precision_is_bf16_only_on_a_cpu_that_computes_it_natively():
    from engine.ttt import native_bf16_cpu, resolve_precision

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_precision("auto", cpu) == native_bf16_cpu()
    assert resolve_precision("auto", gpu) is False       # tiny networks: casts cost more than they save
    assert resolve_precision("bf16", gpu) is True and resolve_precision("fp32", cpu) is False
    assert resolve_precision(None, cpu) is False           # runs made before the setting existed
