"""Reads and actions behind the checkpoints, tasks, task-view and compare screens.

Everything here runs in thread workers: each call opens its own connection (read-only
for reads) and returns plain objects that travel to the event loop in messages. No
Textual, no torch, no engine modules.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from db.processes import launch_engine
from db.store import (Checkpoint, Evaluation, Prediction, Run, Store, WorkspaceError, best_checkpoint_id,
                      run_dir_relative)
from sage_tui import control

Grid = list[list[int]]

# A task's state under the official rule (a test input is solved when either attempt
# equals the expected grid exactly; task score = solved test inputs / test inputs).
SOLVED, PARTLY, FAILED = "solved", "partly", "failed"


# ---------------------------------------------------------------- checkpoints
@dataclass
class EvaluationRow:
    evaluation: Evaluation
    run_name: str              # the eval run
    source_name: str           # the training run whose checkpoint was evaluated
    checkpoint_step: int | None

    @property
    def label(self) -> str:
        step = f" step {self.checkpoint_step}" if self.checkpoint_step is not None else ""
        return f"evaluation {self.evaluation.id} ({self.source_name}{step}, {self.evaluation.dataset})"


@dataclass
class CheckpointsView:
    run: Run
    checkpoints: list[Checkpoint]
    best_id: int | None
    evaluations: list[EvaluationRow]


def _evaluation_rows(store: Store, evaluations: list[Evaluation]) -> list[EvaluationRow]:
    names = {run.id: run.name for run in store.list_runs()}
    steps = {row[0]: row[1] for row in store.conn.execute("SELECT id, step FROM checkpoints")}
    rows = []
    for e in evaluations:
        rows.append(EvaluationRow(e, names.get(e.run_id, f"run {e.run_id}"),
                                  names.get(e.source_run_id, "-"), steps.get(e.checkpoint_id)))
    return rows


def load_checkpoints(workspace: Path, run_id: int, all_runs: bool = False) -> CheckpointsView:
    """A run's checkpoints, its best one, and the evaluations of its checkpoints (or of
    every run's checkpoints when ``all_runs``, for comparing two runs)."""
    with Store.open_readonly(workspace) as store:
        run = store.get_run(run_id)
        checkpoints = store.checkpoints(run_id)
        if all_runs:
            evaluations = store.evaluations()
        else:
            by_id = {e.id: e for e in store.evaluations(source_run_id=run_id)}
            by_id.update({e.id: e for e in store.evaluations(run_id=run_id)})
            evaluations = [by_id[k] for k in sorted(by_id)]
        return CheckpointsView(run, checkpoints, best_checkpoint_id(checkpoints),
                               _evaluation_rows(store, evaluations))


def evaluate_checkpoint(workspace: Path, checkpoint_id: int, dataset: str | None = None,
                        max_tasks: int | None = None) -> str:
    """Launch `sage-engine eval` detached. It creates its own eval run, which the runs
    list shows with its progress; its launch output goes to the source run's folder."""
    with Store.open_readonly(workspace) as store:
        checkpoint = store.get_checkpoint(checkpoint_id)
    wanted = {"checkpoint_id": checkpoint_id, "max_tasks": max_tasks, **({"dataset": dataset} if dataset else {})}
    verdict = control.check_config("eval", wanted, workspace)
    if not verdict.ok:  # refused, or the check itself failed: nothing is launched
        raise WorkspaceError(f"not evaluated: {verdict.message}")
    args = ["eval", "--checkpoint", str(checkpoint_id)]
    if dataset:
        args += ["--dataset", dataset]
    if max_tasks:
        args += ["--max-tasks", str(max_tasks)]
    log_path = workspace / run_dir_relative(checkpoint.run_id) / "eval-launch.log"
    launch_engine(workspace, log_path, *args)
    return (f"evaluating checkpoint {checkpoint_id} (step {checkpoint.step}) on "
            f"{dataset or 'arc1/eval'}: it appears in the runs list as an eval run")


def resume_from_checkpoint(workspace: Path, run_id: int, checkpoint_id: int) -> str:
    return control.resume_run(workspace, run_id, checkpoint_id)


def delete_checkpoint(workspace: Path, checkpoint_id: int) -> str:
    """Delete a checkpoint's file and its row (evaluations made from it stay)."""
    with Store.open(workspace) as store:
        checkpoint = store.get_checkpoint(checkpoint_id)
        (workspace / checkpoint.path).unlink(missing_ok=True)
        store.delete_checkpoint(checkpoint_id)
    return f"deleted checkpoint {checkpoint_id} (step {checkpoint.step})"


# ---------------------------------------------------------------------- tasks
@dataclass
class TaskRow:
    task_id: str
    n_test_inputs: int
    solved_pass1: int
    solved_pass2: int
    score: float               # official: solved test inputs (either attempt) / test inputs
    cell_acc: float | None     # mean cell accuracy of attempt 1 over the task's test inputs

    @property
    def state(self) -> str:
        if self.solved_pass2 >= self.n_test_inputs:
            return SOLVED
        return PARTLY if self.solved_pass2 > 0 else FAILED


@dataclass
class TasksView:
    evaluation: EvaluationRow
    tasks: list[TaskRow]

    def count(self, state: str) -> int:
        return sum(t.state == state for t in self.tasks)


def _task_rows(store: Store, evaluation_id: int) -> list[TaskRow]:
    cell_acc = {row[0]: row[1] for row in store.conn.execute(
        "SELECT task_id, AVG(cell_acc_1) FROM predictions WHERE evaluation_id = ? GROUP BY task_id",
        (evaluation_id,))}
    return [TaskRow(t.task_id, t.n_test_inputs, t.solved_pass1, t.solved_pass2, t.score,
                    cell_acc.get(t.task_id)) for t in store.task_scores(evaluation_id)]


def load_tasks(workspace: Path, evaluation_id: int) -> TasksView:
    with Store.open_readonly(workspace) as store:
        evaluation = store.get_evaluation(evaluation_id)
        return TasksView(_evaluation_rows(store, [evaluation])[0], _task_rows(store, evaluation_id))


def task_score(row: TaskRow | None) -> float:
    return row.score if row is not None else 0.0


# ------------------------------------------------------------------ task view
@dataclass
class TaskDetail:
    evaluation: EvaluationRow
    task_id: str
    row: TaskRow | None
    predictions: list[Prediction]          # one per test input, in order
    demonstrations: list[tuple[Grid, Grid]]
    states: dict[str, str] = field(default_factory=dict)   # every task of the evaluation, by id


def load_demonstrations(store: Store, evaluation_id: int, task_id: str) -> list[tuple[Grid, Grid]]:
    """The task's demonstration pairs as (input, output), from the ``task_demos`` table the
    eval job fills; [] when the table or the row is missing (an older workspace)."""
    exists = store.conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'task_demos'").fetchone()
    if not exists:
        return []
    try:
        pairs = store.task_demonstrations(evaluation_id, task_id)
    except (sqlite3.Error, ValueError):
        return []
    result = []
    for pair in pairs:
        if isinstance(pair, dict):
            result.append((pair.get("input") or [], pair.get("output") or []))
        else:
            result.append((pair[0], pair[1]))
    return result


def load_task(workspace: Path, evaluation_id: int, task_id: str) -> TaskDetail:
    with Store.open_readonly(workspace) as store:
        evaluation = store.get_evaluation(evaluation_id)
        predictions = store.predictions(evaluation_id, task_id)
        if not predictions:
            raise WorkspaceError(f"task {task_id} is not in evaluation {evaluation_id}")
        rows = _task_rows(store, evaluation_id)
        row = next((r for r in rows if r.task_id == task_id), None)
        return TaskDetail(_evaluation_rows(store, [evaluation])[0], task_id, row, predictions,
                          load_demonstrations(store, evaluation_id, task_id),
                          {r.task_id: r.state for r in rows})


def shape(grid: Grid | None) -> tuple[int, int]:
    if not grid:
        return (0, 0)
    return (len(grid), len(grid[0]))


def cell_accuracy(attempt: Grid | None, expected: Grid | None) -> float | None:
    """Right cells over the expected grid's cells; cells outside the attempt are wrong
    (the engine's rule, so a wrong shape never scores by overlap alone)."""
    if attempt is None or not expected:
        return None
    h, w = shape(expected)
    right = sum(1 for r in range(min(h, len(attempt))) for c in range(min(w, len(attempt[r])))
                if attempt[r][c] == expected[r][c])
    return right / (h * w)


# -------------------------------------------------------------------- compare
GAINED, LOST, UNCHANGED = "gained", "lost", "unchanged"


@dataclass
class CompareRow:
    task_id: str
    a: TaskRow | None
    b: TaskRow | None

    @property
    def change(self) -> str:
        score_a, score_b = task_score(self.a), task_score(self.b)
        if score_b > score_a:
            return GAINED
        if score_b < score_a:
            return LOST
        return UNCHANGED


@dataclass
class Comparison:
    a: EvaluationRow
    b: EvaluationRow
    rows: list[CompareRow]

    def count(self, change: str) -> int:
        return sum(r.change == change for r in self.rows)

    @property
    def solved_both(self) -> int:
        return sum(r.change == UNCHANGED and r.a is not None and r.a.state == SOLVED for r in self.rows)


def compare_evaluations(workspace: Path, evaluation_a: int, evaluation_b: int) -> Comparison:
    """Per task, the official score in A and in B: gained (B higher), lost (B lower) or
    unchanged. A task missing from one evaluation counts as scoring 0 there."""
    with Store.open_readonly(workspace) as store:
        eval_a, eval_b = store.get_evaluation(evaluation_a), store.get_evaluation(evaluation_b)
        rows_a = {r.task_id: r for r in _task_rows(store, evaluation_a)}
        rows_b = {r.task_id: r for r in _task_rows(store, evaluation_b)}
        header = _evaluation_rows(store, [eval_a, eval_b])
    rows = [CompareRow(task_id, rows_a.get(task_id), rows_b.get(task_id))
            for task_id in sorted(rows_a.keys() | rows_b.keys())]
    return Comparison(header[0], header[1], rows)
