"""Evaluation with test-time training (TTT): adapt a student to each task, then answer.

For every task of the dataset a student learns from that task's demonstration pairs
only (augmented), then predicts each test input under augmentations, maps every
prediction back, and votes; the two most voted distinct grids are the attempts.

- Without a checkpoint, each task gets a fresh per-task student (``engine.pertask``).
- From a ``pertask`` checkpoint (pretrained across tasks), each task starts from its weights.
- From a student that reads demonstrations (``standalone``), each task fine-tunes a copy
  on leave-one-out queries: every demonstration in turn is the query, the others its context.

Test outputs never leave the main process: workers receive the demonstrations and the
test *inputs* only. Tasks run in parallel worker processes (one torch thread each); the
main process alone writes the database, one task at a time, so a stopped or killed
evaluation resumes at the next unfinished task.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from db.settings import TTT_DEFAULT_MODELS, TTT_DEFAULT_STEPS
from db.store import Prediction, TaskScore
from engine.arc import ArcTask, load_dataset, select_tasks
from engine.evaluate import evaluation_message
from engine.integrity import baseline_figures, evaluation_summary
from engine.pertask import PerTaskSettings, solve_task
from engine.runner import JobFailed, RunContext, StopRequested
from engine.scoring import EvalResult, TestPrediction, grid_cell_accuracy, grids_equal



@dataclass(frozen=True)
class TaskJob:
    """What a worker may see of a task: its demonstrations and test inputs, nothing else."""
    task_id: str
    demos: list[tuple[np.ndarray, np.ndarray]]
    test_inputs: list[np.ndarray]


def task_job(task: ArcTask) -> TaskJob:
    return TaskJob(task.id, [(p.input, p.output) for p in task.train], [p.input for p in task.test])


@dataclass
class TaskOutcome:
    task_id: str
    attempts: list[list[np.ndarray]]
    losses: list[float]
    seconds: float
    demo_exact: float
    shapes: str
    rule: str = ""               # what the rule student found ("" where it was not asked)
    rule_answered: bool = False  # its grid is attempt 1 of every test input


# ------------------------------------------------------------------ workers
_stop_event = None          # set in each worker: the evaluation was asked to stop
_worker_start: dict = {}    # what every task of this evaluation starts from


def _init_worker(stop_event, start: dict) -> None:
    import torch

    global _stop_event, _worker_start
    torch.set_num_threads(1)   # one thread per worker: on a loaded CPU, more threads are slower
    _stop_event, _worker_start = stop_event, start


def _init_pool_worker(stop_event, start: dict) -> None:
    _init_worker(stop_event, start)
    threading.Thread(target=_exit_with_engine, args=(os.getppid(),), daemon=True).start()


def _exit_with_engine(engine_pid: int) -> None:
    """A worker whose engine died (kill -9, the out-of-memory killer) ends too, instead of
    training on for nobody and then waiting forever for a next task."""
    while os.getppid() == engine_pid:
        time.sleep(1)
    os._exit(1)


def _stopping() -> bool:
    return _stop_event is not None and _stop_event.is_set()


def solve(job: TaskJob) -> TaskOutcome | None:
    """Adapt to one task and answer it; None when the evaluation stopped meanwhile."""
    start = _worker_start
    if start.get("kind") == "grid-student":
        from engine.ttt_finetune import adapt_and_answer
        solution = adapt_and_answer(start, job.demos, job.test_inputs, _stopping)
    else:
        solution = solve_task(job.demos, job.test_inputs, start["settings"],
                              init_state=start.get("state"), should_stop=_stopping)
    if _stopping():
        return None
    return TaskOutcome(job.task_id, solution.attempts, solution.losses, solution.seconds,
                       solution.demo_exact, solution.shapes, solution.rule, solution.rule_answered)


# ---------------------------------------------------------------- the job
def ttt_settings(config: dict) -> PerTaskSettings:
    steps = config.get("ttt_steps") or (None if config.get("ttt_seconds") else TTT_DEFAULT_STEPS)
    return PerTaskSettings(steps=steps or 100_000, seconds=config.get("ttt_seconds"),
                           seed=int(config.get("seed") or 0),
                           vote_permutations=max(1, int(config.get("tta_votes") or 4)),
                           dihedral=bool(config.get("ttt_dihedral", True)),
                           colour_permutations=bool(config.get("ttt_colours", True)),
                           models=int(config.get("ttt_models") or TTT_DEFAULT_MODELS),
                           colour_head=int(config.get("ttt_colour_head") or 0),
                           changed_weight=float(config.get("ttt_changed_weight") or 1.0),
                           rule=bool(config.get("ttt_rule", True)))


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX). Elsewhere bf16 on the
    CPU is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str | None, device) -> bool:
    """Whether the per-task students train in bf16. ``auto``: on a CPU with native bf16
    only; on a GPU the per-task students are too small for bf16 to pay for its casts."""
    if precision == "auto":
        return device.type == "cpu" and native_bf16_cpu()
    return precision == "bf16"


def _starting_point(ctx: RunContext, config: dict, settings: PerTaskSettings) -> dict:
    """What each task starts from: fresh weights, a pretrained per-task student, or a
    student that reads demonstrations (fine-tuned per task)."""
    checkpoint_id = config.get("checkpoint_id")
    if checkpoint_id is None:
        return {"kind": "fresh", "settings": settings}
    from engine.checkpoints import load_state

    checkpoint = ctx.store.get_checkpoint(checkpoint_id)
    state = load_state(ctx.absolute(checkpoint.path))
    student = state["student"]
    if student["kind"] == "pertask":
        shape = {"width": student["width"], "depth": student["depth"],
                 "colour_head": student.get("colour_head", 0)}   # older checkpoints have none
        return {"kind": "pretrained", "state": state["model"], "train_config": state["config"],
                "settings": replace(settings, **shape)}
    if student["kind"] == "sage-seed":
        raise JobFailed("a sage-seed student reads teacher features, which a task's test-time "
                        "training cannot make: evaluate it without test-time training, or use a "
                        "standalone or pertask checkpoint")
    return {"kind": "grid-student", "student": student, "state": state["model"],
            "train_config": state["config"], "settings": settings}


def mps_running() -> bool:
    """Whether NVIDIA's Multi-Process Service is up: its control pipe exists."""
    pipes = Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or "/tmp/nvidia-mps")
    return (pipes / "control").exists()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def ttt_job(ctx: RunContext) -> str:
    from engine.predict import pick_device

    config = ctx.config
    # Resolved here, once: a missing GPU fails the run before any task starts, and the run
    # shows the device used. Every worker then trains its tasks there (they share one GPU).
    device = pick_device(config.get("device") or "auto")
    ctx.store.update_run(ctx.run_id, device=str(device))
    settings = replace(ttt_settings(config), device=str(device),
                       bf16=resolve_precision(config.get("ttt_precision"), device))
    dataset = load_dataset(config.get("dataset") or "arc1/eval")
    for problem in dataset.problems:
        ctx.event("bad_task", f"skipped task {problem}")
    tasks = select_tasks(dataset.tasks, config.get("task_ids"), max_tasks=config.get("max_tasks"),
                         max_grid=config.get("max_grid"))
    if not tasks:
        raise JobFailed(f"no tasks to evaluate in {dataset.name} with these limits")
    start = _starting_point(ctx, config, settings)
    evaluation_id = ctx.store.evaluation_of_run(ctx.run_id)
    if evaluation_id is None:
        # The no-learning baseline on the same tasks is beside the score from the first task.
        summary = {"test_time_training": _describe(start, settings), "n_tasks_planned": len(tasks),
                   "attempts_per_input": 2, **baseline_figures(tasks)}
        evaluation_id = ctx.store.start_evaluation(
            ctx.run_id, config.get("source_run_id"), config.get("checkpoint_id"), dataset.name, summary)
    done = set(ctx.store.evaluated_task_ids(evaluation_id))
    pending = [t for t in tasks if t.id not in done]
    workers = max(1, min(int(config.get("workers") or available_cores()), len(pending) or 1))
    ctx.event("eval", f"test-time training on {len(tasks)} tasks of {dataset.name} "
                      f"({len(done)} already done), {_describe(start, settings)}, "
                      f"{workers} worker process(es) on {device}", {"evaluation_id": evaluation_id})
    if device.type == "cuda" and workers > 1 and not mps_running():
        ctx.event("warning", f"{workers} worker processes share the GPU one at a time: start NVIDIA's "
                          "Multi-Process Service (nvidia-cuda-mps-control -d) before the evaluation so "
                          "their kernels run at once (32 tasks on an H100: 40 s with it, 75 s without)")
    by_id = {t.id: t for t in tasks}
    started = time.perf_counter()
    count = len(done)
    ctx.set_progress(step=count, total_steps=len(tasks), progress=count / len(tasks))
    for outcome in _outcomes(ctx, pending, start, workers):
        count += 1
        score = _store_outcome(ctx, evaluation_id, by_id[outcome.task_id], outcome)
        running = ctx.store.get_evaluation(evaluation_id)
        tail = outcome.losses[-10:]
        ctx.log_metrics(count, {
            "ttt_loss": float(np.mean(tail)) if tail else float("nan"),
            "ttt_first_loss": outcome.losses[0] if outcome.losses else float("nan"),
            "ttt_demo_exact": outcome.demo_exact, "ttt_task_score": score,
            "ttt_seconds": outcome.seconds, "ttt_steps": len(outcome.losses),
            "ttt_rule": float(outcome.rule_answered),
            "ttt_pass2": running.score_pass2, "ttt_pass1": running.score_pass1})
        per_task = (time.perf_counter() - started) / (count - len(done))
        ctx.set_progress(step=count, total_steps=len(tasks), progress=count / len(tasks),
                         eta_s=per_task * (len(tasks) - count))
    _summarise(ctx, evaluation_id, tasks, start.get("train_config"))
    message = evaluation_message(ctx.store.get_evaluation(evaluation_id), dataset.name)
    ctx.event("evaluation", message, {"evaluation_id": evaluation_id})
    print(message, flush=True)
    return "finished"


def _summarise(ctx: RunContext, evaluation_id: int, tasks: list[ArcTask], train_config: dict | None) -> None:
    """The evaluation's figures once every task is done, defined as for any evaluation
    (``engine.integrity.evaluation_summary``: figures, baselines, overlap with the
    checkpoint's training data), beside what the test-time training was."""
    stored = ctx.store.predictions(evaluation_id)
    result = EvalResult([TestPrediction(
        p.task_id, p.test_index, _grid(p.test_input), _grid(p.expected) if p.expected is not None else None,
        [_grid(a) for a in (p.attempt_1, p.attempt_2) if a is not None]) for p in stored])
    done = {p.task_id for p in stored}
    evaluation = ctx.store.get_evaluation(evaluation_id)
    summary = {**evaluation.summary,
               **evaluation_summary(result, [t for t in tasks if t.id in done], train_config)}
    ctx.store.update_evaluation_summary(evaluation_id, summary)


def _grid(rows: list[list[int]]) -> np.ndarray:
    """A stored grid as a 2-D array, an empty answer included (0 x 0)."""
    return np.asarray(rows, dtype=np.uint8).reshape(len(rows), len(rows[0]) if rows else 0)


def _describe(start: dict, settings: PerTaskSettings) -> str:
    fresh = "a fresh per-task student" if settings.models == 1 else f"{settings.models} fresh per-task students"
    pooled = "" if settings.models == 1 else f" ({settings.models} students pooled)"
    origin = {"fresh": f"{fresh} per task",
              "pretrained": f"the pretrained per-task student, adapted per task{pooled}",
              "grid-student": f"the {start.get('student', {}).get('kind')} student, "
                              "fine-tuned per task on leave-one-out queries"}[start["kind"]]
    if start["kind"] != "grid-student" and settings.colour_head:
        origin += f" with a colour-equivariant head ({settings.colour_head} wide)"
    if start["kind"] != "grid-student" and settings.changed_weight != 1:
        origin += f", cells that differ from the input weighing {settings.changed_weight:g}x"
    if start["kind"] != "grid-student" and settings.rule:
        origin += ", the rule student answering first where a shallow rule explains every demonstration"
    if start["kind"] != "grid-student" and settings.bf16:
        origin += ", trained in bf16"
    budget = " and ".join(part for part in (
        f"{settings.steps} steps" if settings.steps < 100_000 else "",
        f"{settings.seconds:g} s" if settings.seconds else "") if part)
    return f"{origin}, at most {budget} per task"


def _outcomes(ctx: RunContext, pending: list[ArcTask], start: dict, workers: int):
    """Each task's outcome as it finishes (in parallel worker processes when workers > 1).
    A stop request ends every worker's training at once; unfinished tasks stay pending."""
    jobs = [task_job(t) for t in pending]
    if workers == 1:
        import torch

        threads = torch.get_num_threads()   # restored after: this process may go on
        stop = threading.Event()
        _init_worker(stop, start)
        try:
            for job in jobs:
                if ctx.should_stop:
                    raise StopRequested()
                stop.clear()
                watcher = _StopWatcher(ctx, stop)
                outcome = solve(job)
                watcher.close()
                if outcome is None:
                    raise StopRequested()
                yield outcome
        finally:
            torch.set_num_threads(threads)
        return
    spawn = multiprocessing.get_context("spawn")   # no fork of a process holding threads and locks
    stop = spawn.Event()
    watcher = _StopWatcher(ctx, stop)
    # An executor, not a multiprocessing.Pool: a Pool replaces a worker that dies (the kernel's
    # out-of-memory killer, a kill -9) and waits forever for the task it held.
    executor = ProcessPoolExecutor(workers, mp_context=spawn, initializer=_init_pool_worker,
                                   initargs=(stop, start))
    try:
        for future in as_completed([executor.submit(solve, job) for job in jobs]):
            try:
                outcome = future.result()
            except BrokenProcessPool:
                raise JobFailed(
                    "a worker process ended abruptly (killed, or out of memory?); the tasks finished "
                    "are kept: resume the run to continue at the next unfinished task") from None
            if outcome is None or stop.is_set():
                break
            yield outcome
    except BaseException:
        stop.set()   # the evaluation ends here (a failure): the workers drop their tasks at once
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        watcher.close()
    if stop.is_set() or ctx.should_stop:
        raise StopRequested()


class _StopWatcher:
    """Passes the run's stop request to the workers' event while they train."""

    def __init__(self, ctx: RunContext, event) -> None:
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(ctx, event), daemon=True)
        self._thread.start()

    def _watch(self, ctx: RunContext, event) -> None:
        while not self._done.wait(0.2):
            if ctx.should_stop:
                event.set()
                return

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


def _store_outcome(ctx: RunContext, evaluation_id: int, task: ArcTask, outcome: TaskOutcome) -> float:
    """Score one task by the official rule and store its predictions; returns its score."""
    predictions = []
    for index, (pair, attempts) in enumerate(zip(task.test, outcome.attempts)):
        expected = pair.output
        correct = [expected is not None and grids_equal(a, expected) for a in attempts[:2]]
        cell = [grid_cell_accuracy(a, expected) if expected is not None else None for a in attempts[:2]]
        predictions.append(Prediction(
            evaluation_id, task.id, index, pair.input.tolist(),
            expected.tolist() if expected is not None else None,
            attempts[0].tolist(), attempts[1].tolist() if len(attempts) > 1 else None,
            correct[0], len(correct) > 1 and correct[1], cell[0], cell[1] if len(cell) > 1 else None))
    solved1 = sum(p.correct_1 for p in predictions)
    solved2 = sum(p.correct_1 or p.correct_2 for p in predictions)
    score = solved2 / len(predictions)
    ctx.store.add_task_result(evaluation_id, predictions,
                              TaskScore(evaluation_id, task.id, len(predictions), solved1, solved2, score),
                              task.to_dict()["train"])
    ctx.event("task", f"{task.id}: {solved2}/{len(predictions)} solved, {len(outcome.losses)} steps, "
                      f"{outcome.seconds:.1f} s, the first network reproduces {outcome.demo_exact:.0%} of the demonstrations, "
                      f"shape: {outcome.shapes}" + (f"; {outcome.rule}" if outcome.rule else ""))
    return score
