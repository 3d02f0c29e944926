"""Exports: an evaluation as an ARC Prize submission or CSV; a run's metrics as CSV/JSON."""

from __future__ import annotations

import csv
import io
import json

from db.store import Prediction, Store
from engine.errors import UserError


def export_evaluation(store: Store, evaluation_id: int, fmt: str) -> str:
    store.get_evaluation(evaluation_id)  # a clear error for an unknown id
    predictions = store.predictions(evaluation_id)
    if fmt == "submission":
        # {task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]}, test inputs in order;
        # a missing second attempt repeats the first, as the submission format needs both.
        submission: dict[str, list[dict]] = {}
        for p in predictions:
            first = submission_grid(p.attempt_1)
            second = submission_grid(p.attempt_2) if p.attempt_2 is not None else first
            submission.setdefault(p.task_id, []).append({"attempt_1": first, "attempt_2": second})
        return json.dumps(submission) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["task_id", "test_index", "correct_attempt_1", "correct_attempt_2",
                         "cell_acc_attempt_1", "cell_acc_attempt_2", "expected_shape", "attempt_1_shape",
                         "attempts"])
        for p in predictions:
            shape = (lambda g: f"{len(g)}x{len(g[0]) if g else 0}" if g is not None else "")
            writer.writerow([p.task_id, p.test_index, int(p.correct_1), int(p.correct_2),
                             _num(p.cell_acc_1), _num(p.cell_acc_2), shape(p.expected), shape(p.attempt_1),
                             len(_distinct_attempts(p))])
        return out.getvalue()
    raise UserError(f"evaluations export as submission or csv, not {fmt}")


def _distinct_attempts(p: Prediction) -> list:
    return [a for i, a in enumerate((p.attempt_1, p.attempt_2)) if a is not None
            and (i == 0 or a != p.attempt_1)]


def evaluation_note(store: Store, evaluation_id: int) -> str | None:
    """A warning to print beside an export whose pass@2 is really a pass@1: test inputs
    with a single distinct attempt (a submission then repeats it as attempt 2)."""
    single = sum(len(_distinct_attempts(p)) < 2 for p in store.predictions(evaluation_id))
    if not single:
        return None
    return (f"pass@1 only for {single} test input(s): one distinct attempt each, so their "
            f"attempt_2 repeats attempt_1 and pass@2 cannot exceed pass@1 there")
PLACEHOLDER_GRID = [[0]]


def submission_grid(grid: list | None) -> list:
    """The ARC Prize format needs a non-empty grid for every attempt: an empty or missing
    prediction is written as a 1×1 black grid (scored wrong, as it was)."""
    if not grid or not grid[0]:
        return PLACEHOLDER_GRID
    return grid


def export_metrics(store: Store, run_id: int, fmt: str) -> str:
    store.get_run(run_id)
    series = {key: store.read_metrics_after(run_id, key) for key in store.metric_names(run_id)}
    if fmt == "json":
        return json.dumps({key: [{"step": s, "value": v, "wall_time": w}
                                 for s, v, w in zip(c.steps, c.values, c.wall_times)]
                           for key, c in series.items()}) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["key", "step", "value", "wall_time"])
        for key, chunk in series.items():
            for row in zip(chunk.steps, chunk.values, chunk.wall_times):
                writer.writerow([key, *row])
        return out.getvalue()
    raise UserError(f"metrics export as csv or json, not {fmt}")


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"
