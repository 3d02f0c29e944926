"""Exports: an evaluation as an ARC Prize submission (scored here by an independent
implementation of the official rule) and as CSV; a run's metrics as CSV and JSON; and
the `sage-engine export` command line."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from engine.evaluate import store_result
from engine.export import evaluation_note, export_evaluation, export_metrics
from engine import predict

G = np.array


# task id → test inputs, each (input, expected, attempts). Known outcome per task:
#   aaa: solved by attempt 1                          → 1
#   bbb: attempt 1 wrong, attempt 2 right             → 1   (pass@1: 0)
#   ccc: two test inputs, the first solved, the second
#        wrong in both attempts (one a wrong shape)   → 1/2
#   ddd: a single wrong attempt                       → 0
# Official score: (1 + 1 + 0.5 + 0) / 4 = 0.625; pass@1: (1 + 0 + 0.5 + 0) / 4 = 0.375.
CASES = {
    "aaa": [([[1, 2]], [[2, 1]], [[[2, 1]], [[1, 2]]])],
    "bbb": [([[3]], [[4, 4], [4, 4]], [[[4]], [[4, 4], [4, 4]]])],
    "ccc": [([[5, 0], [0, 5]], [[0, 5], [5, 0]], [[[0, 5], [5, 0]], [[5, 0], [0, 5]]]),
            ([[6, 6, 6]], [[6], [6], [6]], [[[6, 6, 6]], [[6], [6]]])],
    "ddd": [([[7]], [[8]], [[[9]]])],
}


def official_score(submission: dict, solutions: dict[str, list]) -> float:
    """The ARC Prize rule, written independently of the project: a test input is solved
    when attempt_1 or attempt_2 equals its expected grid exactly; a task scores the
    fraction of its test inputs solved; the score is the mean over tasks."""
    task_scores = []
    for task_id, expected_outputs in solutions.items():
        entries = submission.get(task_id, [])
        solved = 0
        for index, expected in enumerate(expected_outputs):
            if index < len(entries):
                entry = entries[index]
                solved += entry["attempt_1"] == expected or entry["attempt_2"] == expected
        task_scores.append(solved / len(expected_outputs))
    return sum(task_scores) / len(task_scores)


@pytest.fixture
def evaluation(store):
    """Stored through the engine's own path (`engine.evaluate.store_result`), with the
    predictions in a scrambled order, as voting may produce them."""
    source = store.create_run("train-1", "train", {}, status="finished")
    eval_run = store.create_run("eval-1", "eval", {}, status="finished")
    predictions = []
    for task_id, tests in CASES.items():
        for index, (grid_in, expected, attempts) in enumerate(tests):
            predictions.append(predict.TestPrediction(task_id, index, G(grid_in), G(expected),
                                              [G(a) for a in attempts]))
    predictions.reverse()
    ctx = SimpleNamespace(store=store, run_id=eval_run.id)
    result = predict.EvalResult(predictions)
    evaluation_id = store_result(ctx, result, source.id, None, "test-set",
                                 {task_id: [] for task_id in CASES}, result.summary())
    return evaluation_id


def solutions() -> dict[str, list]:
    return {task_id: [expected for _, expected, _ in tests] for task_id, tests in CASES.items()}


def test_submission_scores_back_to_the_stored_score(store, evaluation):
    submission = json.loads(export_evaluation(store, evaluation, "submission"))
    stored = store.get_evaluation(evaluation)
    assert official_score(submission, solutions()) == pytest.approx(stored.score_pass2)
    assert stored.score_pass2 == pytest.approx(0.625)
    assert stored.score_pass1 == pytest.approx(0.375)


def test_submission_has_the_arc_prize_shape(store, evaluation):
    submission = json.loads(export_evaluation(store, evaluation, "submission"))
    assert sorted(submission) == sorted(CASES)
    for task_id, tests in CASES.items():
        entries = submission[task_id]
        assert len(entries) == len(tests)          # one entry per test input, in order
        for entry, (_, _, attempts) in zip(entries, tests):
            assert set(entry) == {"attempt_1", "attempt_2"}
            assert entry["attempt_1"] == attempts[0]
            # A missing second attempt repeats the first: the format needs both.
            assert entry["attempt_2"] == (attempts[1] if len(attempts) > 1 else attempts[0])
            for grid in entry.values():
                assert all(isinstance(v, int) and 0 <= v <= 9 for row in grid for v in row)


def test_an_empty_prediction_is_written_as_a_non_empty_grid(store):
    """The ARC Prize format rejects [] as an attempt: an empty prediction becomes [[0]]."""
    from db.store import Prediction, TaskScore

    source = store.create_run("train-1", "train", {}, status="finished")
    eval_run = store.create_run("eval-1", "eval", {}, status="finished")
    evaluation_id = store.add_evaluation(
        eval_run.id, source.id, None, "test-set",
        [Prediction(0, "eee", 0, [[1]], [[2]], [], None, False, False, None, None),
         Prediction(0, "eee", 1, [[1]], [[2]], [[3]], [[]], False, False, None, None)],
        [TaskScore(0, "eee", 2, 0, 0, 0.0)], {}, {"eee": []})
    entries = json.loads(export_evaluation(store, evaluation_id, "submission"))["eee"]
    assert entries == [{"attempt_1": [[0]], "attempt_2": [[0]]},
                       {"attempt_1": [[3]], "attempt_2": [[0]]}]


def test_evaluation_csv_has_one_row_per_test_input(store, evaluation):
    rows = list(csv.DictReader(io.StringIO(export_evaluation(store, evaluation, "csv"))))
    assert list(rows[0]) == ["task_id", "test_index", "correct_attempt_1", "correct_attempt_2",
                             "cell_acc_attempt_1", "cell_acc_attempt_2", "expected_shape",
                             "attempt_1_shape", "attempts"]
    assert [(r["task_id"], r["test_index"]) for r in rows] == \
        [("aaa", "0"), ("bbb", "0"), ("ccc", "0"), ("ccc", "1"), ("ddd", "0")]
    by_key = {(r["task_id"], r["test_index"]): r for r in rows}
    bbb = by_key[("bbb", "0")]
    assert (bbb["correct_attempt_1"], bbb["correct_attempt_2"]) == ("0", "1")
    assert (bbb["expected_shape"], bbb["attempt_1_shape"]) == ("2x2", "1x1")
    assert float(bbb["cell_acc_attempt_1"]) == pytest.approx(0.25)   # one of four cells
    assert by_key[("ddd", "0")]["cell_acc_attempt_2"] == ""          # no second attempt
    assert [r["attempts"] for r in rows] == ["2", "2", "2", "2", "1"]
    # ddd had one attempt: its pass@2 is a pass@1, and the export says so.
    assert "pass@1 only for 1 test input" in evaluation_note(store, evaluation)


def test_metrics_export_as_csv_and_json(store):
    run = store.create_run("train-1", "train", {})
    store.append_metrics(run.id, [("loss", 1, 0.5, 10.0), ("loss", 2, 0.25, 11.0),
                                  ("val_pass2", 2, 0.125, 11.5)])
    rows = list(csv.DictReader(io.StringIO(export_metrics(store, run.id, "csv"))))
    assert [(r["key"], int(r["step"]), float(r["value"])) for r in rows] == \
        [("loss", 1, 0.5), ("loss", 2, 0.25), ("val_pass2", 2, 0.125)]
    data = json.loads(export_metrics(store, run.id, "json"))
    assert data["loss"] == [{"step": 1, "value": 0.5, "wall_time": 10.0},
                            {"step": 2, "value": 0.25, "wall_time": 11.0}]
    assert data["val_pass2"][0]["value"] == 0.125


def test_cli_exports_a_submission_file_and_reports_bad_ids(workspace, store, evaluation, tmp_path):
    out = tmp_path / "submission.json"
    done = subprocess.run([sys.executable, "-m", "engine", "export", "--workspace", str(workspace),
                           "--evaluation", str(evaluation), "--format", "submission", "-o", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pass@1 only for 1 test input" in done.stderr
    submission = json.loads(out.read_text())
    assert official_score(submission, solutions()) == pytest.approx(0.625)

    missing = subprocess.run([sys.executable, "-m", "engine", "export", "--workspace", str(workspace),
                              "--evaluation", "999"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    assert "no evaluation 999" in missing.stderr and "Traceback" not in missing.stderr
