import subprocess
import sys

import numpy as np
import pytest
import torch

from engine.encoding import CANVAS, IGNORE_INDEX, NUM_CLASSES, OUTSIDE, encode_target
from engine.scoring import (EvalResult, TestPrediction, batch_metrics, colour_accuracy,
                            grid_cell_accuracy, grid_foreground_accuracy, score_submission)


def grid(rows):
    return np.asarray(rows, dtype=np.uint8)


def logits_for(*grids):
    """Logits whose argmax decodes to each grid (a grid of shape 0x0 = all OUTSIDE)."""
    cells = np.stack([encode_target(g) if g.size else np.full((CANVAS, CANVAS), OUTSIDE)
                      for g in grids])
    return torch.nn.functional.one_hot(torch.from_numpy(cells), NUM_CLASSES).float()


def targets_for(*grids):
    return torch.from_numpy(np.stack([encode_target(g) for g in grids]))


def test_all_black_prediction_is_scored_over_real_cells_only():
    expected = grid([[0, 0, 0], [0, 5, 0], [0, 0, 7]])   # 7 of 9 cells black
    metrics = batch_metrics(logits_for(np.zeros((3, 3), np.uint8)), targets_for(expected))
    assert metrics["cell_acc"] == pytest.approx(7 / 9)   # not 898/900 as over the canvas
    assert metrics["fg_acc"] == 0.0
    assert metrics["shape_acc"] == 1.0 and metrics["exact"] == 0.0


def test_prediction_shape_comes_from_the_logits_not_the_target():
    expected = grid([[1, 2], [3, 4]])
    too_big = np.zeros((3, 3), np.uint8)
    too_big[:2, :2] = expected                         # right cells, wrong shape
    metrics = batch_metrics(logits_for(too_big), targets_for(expected))
    assert metrics["cell_acc"] == pytest.approx(4 / 9)     # the 5 extra cells are wrong
    assert metrics["shape_acc"] == 0.0 and metrics["exact"] == 0.0
    too_small = batch_metrics(logits_for(grid([[1]])), targets_for(expected))
    assert too_small["cell_acc"] == pytest.approx(1 / 4)   # cells beyond the shape are wrong


def test_exact_and_batch_pooling_and_unknown_targets():
    first, second = grid([[1, 2]]), grid([[3], [0]])
    logits = logits_for(first, grid([[3], [4]]), grid([[9]]))
    target = targets_for(first, second, first)
    target[2] = IGNORE_INDEX                               # unknown output: not scored
    metrics = batch_metrics(logits, target)
    assert metrics["examples"] == 2
    assert metrics["exact"] == 0.5
    assert metrics["shape_acc"] == 1.0
    assert metrics["cell_acc"] == pytest.approx(3 / 4)
    assert metrics["fg_acc"] == pytest.approx(3 / 3)


def test_empty_prediction_is_wrong():
    metrics = batch_metrics(logits_for(np.zeros((0, 0), np.uint8)), targets_for(grid([[0]])))
    assert metrics["cell_acc"] == 0.0 and metrics["exact"] == 0.0 and metrics["shape_acc"] == 0.0


def test_grid_cell_accuracy_counts_missing_cells_as_wrong():
    expected = grid([[1, 2, 3], [4, 5, 6]])
    assert grid_cell_accuracy(expected, expected) == 1.0
    assert grid_cell_accuracy(grid([[1, 2]]), expected) == pytest.approx(2 / 6)
    assert grid_cell_accuracy(np.zeros((0, 0), np.uint8), expected) == 0.0
    # A too-big grid is penalised: cells over either grid, so its extra cells are wrong.
    assert grid_cell_accuracy(np.pad(expected, ((0, 1), (0, 1))), expected) == pytest.approx(6 / 12)
    assert grid_cell_accuracy(np.tile(expected, (3, 3)), expected) == pytest.approx(6 / 54)
    assert grid_cell_accuracy(np.pad(expected, ((1, 0), (0, 0))), expected) == 0.0


def test_official_rule_scores_each_test_input():
    solution_a = [grid([[1]]), grid([[2, 2]])]
    solution_b = [grid([[3]])]
    attempts = {
        "a": [[grid([[1]]), grid([[9]])],              # test 0 solved on attempt 1
              [grid([[0, 0]]), grid([[5, 5]])]],       # test 1 missed
        "b": [[grid([[0]]), grid([[3]]), grid([[3]])]],   # solved on attempt 2
    }
    score = score_submission(attempts, {"a": solution_a, "b": solution_b, "c": [grid([[4]])]})
    assert score.task_scores == {"a": 0.5, "b": 1.0, "c": 0.0}
    assert score.task_scores_pass1 == {"a": 0.5, "b": 0.0, "c": 0.0}
    assert score.pass_at_2 == pytest.approx(1.5 / 3)
    assert score.pass_at_1 == pytest.approx(0.5 / 3)
    assert (score.test_inputs, score.solved_pass1, score.solved_pass2) == (4, 1, 2)


def test_only_two_attempts_count_and_shape_matters():
    solutions = {"t": [grid([[1, 1]])]}
    third_try = {"t": [[grid([[0]]), grid([[0]]), grid([[1, 1]])]]}
    assert score_submission(third_try, solutions).pass_at_2 == 0.0
    transposed = {"t": [[grid([[1], [1]])]]}
    assert score_submission(transposed, solutions).pass_at_2 == 0.0


def test_colour_and_foreground_accuracy_helpers():
    pairs = [(grid([[0, 1], [2, 2]]), grid([[0, 1], [1, 2]])),
             (grid([[0]]), grid([[0, 3]]))]
    accuracy = colour_accuracy(pairs)
    assert accuracy == {0: 1.0, 1: 0.5, 2: 1.0, 3: 0.0}
    assert grid_foreground_accuracy(*pairs[0]) == pytest.approx(2 / 3)
    assert grid_foreground_accuracy(grid([[1]]), grid([[0]])) is None


def test_training_and_held_out_figures_share_one_definition():
    """The same predictions score the same in a training batch and in validation: a small
    grid counts as much as a big one in both (the issue: copy-the-input scored 0.757
    pooled over cells in training, 0.603 averaged per grid in validation)."""
    big = grid(np.arange(100).reshape(10, 10) % 10)
    big_guess = big.copy()
    big_guess[0, 0] = 9                                      # 99 of 100 right
    small, small_guess = grid([[1, 2], [3, 4]]), grid([[0, 0], [0, 4]])   # 1 of 4 right
    too_big_guess = np.pad(grid([[5]]), ((0, 1), (0, 1)))    # 1 right over 4 cells
    expected = [big, small, grid([[5]])]
    guesses = [big_guess, small_guess, too_big_guess]
    training = batch_metrics(logits_for(*guesses), targets_for(*expected))
    held_out = EvalResult([TestPrediction(f"t{i}", 0, e, e, [g, g])
                           for i, (g, e) in enumerate(zip(guesses, expected))]).summary()
    for figure in ("cell_acc", "fg_acc", "shape_acc"):
        assert training[figure] == pytest.approx(held_out[figure]), figure
    assert held_out["cell_acc"] == pytest.approx((0.99 + 0.25 + 0.25) / 3)
    assert training["exact"] == held_out["pass1"] == 0.0
    assert "exact" not in held_out    # pass1 is the held-out exact match: one figure, one name


def test_scoring_and_grid_decoding_load_without_torch():
    code = ("import sys, engine.scoring, engine.encoding, engine.augment, engine.integrity; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
