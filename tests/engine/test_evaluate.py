"""`sage-engine eval`: every test input's attempts stored, scored by the official rule."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from db.store import Store
from engine.arc import load_dataset, select_tasks
from engine.encoding import OUTSIDE
from engine.evaluate import eval_job
from engine.integrity import baseline_figures, trained_tasks
from engine.predict import runner_up_grid
from engine.runner import run_job
from engine.train import train_job


@pytest.mark.slow
def test_eval_stores_predictions_and_prints_the_official_score(workspace, fast_train_config):
    with Store.open(workspace) as store:
        run = store.create_run("t", "train", {**fast_train_config, "max_steps": 3})
    assert run_job(workspace, run.id, train_job) == 0
    with Store.open_readonly(workspace) as store:
        checkpoint = store.checkpoints(run.id)[-1]

    result = subprocess.run(
        [sys.executable, "-m", "engine", "eval", "--checkpoint", str(checkpoint.id),
         "--dataset", "arc1/eval", "--max-grid", "10", "--max-tasks", "2", "--tta-votes", "2",
         "--workspace", str(workspace)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "pass@2" in result.stdout and "official ARC rule" in result.stdout

    tasks = select_tasks(load_dataset("arc1/eval").tasks, max_tasks=2, max_grid=10)
    assert [t.id for t in tasks] != [t.id for t in load_dataset("arc1/eval").tasks[:2]]
    n_test_inputs = sum(len(t.test) for t in tasks)
    with Store.open_readonly(workspace) as store:
        [evaluation] = store.evaluations(source_run_id=run.id)
        predictions = store.predictions(evaluation.id)
        scores = store.task_scores(evaluation.id)
        eval_run = store.get_run(evaluation.run_id)
        demos = store.task_demonstrations(evaluation.id, tasks[0].id)
    assert eval_run.kind == "eval" and eval_run.status == "finished"
    assert eval_run.device == "cpu"   # the device used, not the "auto" asked for
    assert (evaluation.checkpoint_id, evaluation.n_tasks, evaluation.n_test_inputs) == (
        checkpoint.id, 2, n_test_inputs)
    assert len(predictions) == n_test_inputs
    assert sorted({p.task_id for p in predictions}) == sorted(t.id for t in tasks)
    by_id = {t.id: t for t in tasks}
    for p in predictions:
        expected = by_id[p.task_id].test[p.test_index].output.tolist()
        assert p.expected == expected
        assert p.correct_1 == (p.attempt_1 == expected)
        assert p.correct_2 == (p.attempt_1 == expected or p.attempt_2 == expected)
        assert 0.0 <= p.cell_acc_1 <= 1.0
    # The summary score is the mean over tasks of the fraction of test inputs solved.
    assert evaluation.score_pass2 == sum(s.solved_pass2 / s.n_test_inputs for s in scores) / len(scores)
    assert demos == by_id[tasks[0].id].to_dict()["train"]
    # Per-colour accuracy: 0 (black) is in nearly every expected grid.
    assert 0.0 <= evaluation.summary["colour0_acc"] <= 1.0


def test_eval_of_a_missing_checkpoint_is_a_clear_error(workspace):
    result = subprocess.run(
        [sys.executable, "-m", "engine", "eval", "--checkpoint", "42", "--workspace", str(workspace)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "no checkpoint 42" in result.stderr and "Traceback" not in result.stderr


def test_eval_flags_tasks_the_checkpoint_trained_on_and_scores_beside_baselines(
        workspace, fast_train_config, capsys):
    """A checkpoint trained on arc1/train evaluated on arc1/train's first 32 tasks: the two
    it trained on are named, the score without them is stored and printed, the
    no-learning baseline sits beside the score, and with tta_votes=0 every test input
    still gets two distinct attempts (a real pass@2)."""
    with Store.open(workspace) as store:
        run = store.create_run("t", "train", {**fast_train_config, "max_steps": 3})
    assert run_job(workspace, run.id, train_job) == 0
    with Store.open(workspace) as store:
        checkpoint = store.checkpoints(run.id)[-1]
        eval_run = store.create_run("e", "eval", {"checkpoint_id": checkpoint.id, "dataset": "arc1/train",
                                                  "max_tasks": 32, "tta_votes": 0, "device": "cpu"})
    capsys.readouterr()
    assert run_job(workspace, eval_run.id, eval_job) == 0
    printed = capsys.readouterr().out

    tasks = select_tasks(load_dataset("arc1/train").tasks, max_tasks=32)
    trained = {t.id for t in trained_tasks(run.config)}
    with Store.open_readonly(workspace) as store:
        [evaluation] = store.evaluations(source_run_id=run.id)
        predictions = store.predictions(evaluation.id)
        scores = store.task_scores(evaluation.id)
    summary = evaluation.summary
    assert sorted(evaluation.overlapping_tasks) == sorted(trained & {t.id for t in tasks}) == [
        "0d3d703e", "1e0a9b12"]
    unseen = [s for s in scores if s.task_id not in trained]
    assert summary["without_overlap"]["n_tasks"] == len(unseen) == 30
    assert evaluation.score_unseen == sum(s.score for s in unseen) / len(unseen)
    assert summary["baseline_cell_acc"] == baseline_figures(tasks)["baseline_cell_acc"]
    assert "WARNING 2 of these tasks overlap" in printed and "no-learning baseline" in printed
    assert summary["attempts_per_input"] == 2
    assert all(p.attempt_2 is not None and p.attempt_2 != p.attempt_1 for p in predictions)


def test_runner_up_grid_is_the_closest_call_that_changes_the_answer():
    best = np.full((30, 30), OUTSIDE)
    best[:2, :2] = [[1, 2], [3, 4]]
    classes = np.stack([best, np.full((30, 30), 5)], axis=-1)
    gaps = np.full((30, 30), 9.0)
    gaps[10, 10] = 0.1      # closest, but outside the grid: changes nothing decoded
    gaps[1, 1] = 0.5        # the closest call inside the grid
    first, second = runner_up_grid(classes, gaps)
    assert first.tolist() == [[1, 2], [3, 4]] and second.tolist() == [[1, 2], [3, 5]]
    gaps[0, 2] = 0.2        # just beyond row 0: the runner-up is one column wider
    assert runner_up_grid(classes, gaps)[1].shape == (2, 3)
