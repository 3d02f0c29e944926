"""ARC scoring that tells the truth.

Accuracy is measured over the real cells of the expected grid only, never over the
padded canvas; a grid counts as solved only when it matches exactly, shape included.
The grid-level functions are pure numpy; ``batch_metrics`` works on torch tensors
and imports torch only when called, so this module stays light for the TUI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.encoding import IGNORE_INDEX, OUTSIDE

MAX_ATTEMPTS = 2   # official ARC Prize rule: two attempts per test input


def batch_metrics(logits, target) -> dict[str, float]:
    """Metrics of a batch: logits [B, 30, 30, 11] tensor, target [B, 30, 30] tensor
    (encoded with OUTSIDE beyond the grid; all IGNORE_INDEX where unknown, which are
    skipped). The predicted grid is decoded from the argmax exactly as
    ``engine.encoding.decode_prediction`` does, vectorised.

    cell_acc: real cells of the expected grids right (cells outside the predicted
    shape are wrong); fg_acc: the same over cells whose expected colour is not 0
    (NaN if there are none); shape_acc: predicted shape right; exact: whole grid right;
    examples: how many examples were scored. Cell rates pool the batch's cells.
    """
    import torch

    known = (target != IGNORE_INDEX).any(dim=(1, 2))
    cells = logits[known].argmax(-1)
    target = target[known]
    count = int(known.sum())
    if count == 0:
        return {"cell_acc": float("nan"), "fg_acc": float("nan"), "shape_acc": float("nan"),
                "exact": float("nan"), "examples": 0}

    inside = cells != OUTSIDE
    pred_height = torch.cumprod(inside[:, :, 0].long(), dim=1).sum(1)
    pred_width = torch.cumprod(inside[:, 0, :].long(), dim=1).sum(1)
    expected_height = (target[:, :, 0] != OUTSIDE).sum(1)
    expected_width = (target[:, 0, :] != OUTSIDE).sum(1)

    index = torch.arange(cells.shape[1], device=cells.device)
    in_pred = ((index.view(1, -1, 1) < pred_height.view(-1, 1, 1))
               & (index.view(1, 1, -1) < pred_width.view(-1, 1, 1)))
    pred_grid = torch.where(inside, cells, torch.zeros_like(cells))
    real = target != OUTSIDE
    right = in_pred & (pred_grid == target) & real
    foreground = real & (target != 0)

    shape_right = (pred_height == expected_height) & (pred_width == expected_width)
    all_cells_right = (right == real).all(dim=2).all(dim=1)
    fg_total = int(foreground.sum())
    return {
        "cell_acc": float(right.sum()) / float(real.sum()),
        "fg_acc": float((right & foreground).sum()) / fg_total if fg_total else float("nan"),
        "shape_acc": float(shape_right.float().mean()),
        "exact": float((shape_right & all_cells_right).float().mean()),
        "examples": count,
    }


def grids_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _overlap_right(pred: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Boolean [H, W] over expected's cells: True where pred has the same colour there.
    Cells beyond pred's shape are False."""
    right = np.zeros(expected.shape, dtype=bool)
    height = min(pred.shape[0], expected.shape[0])
    width = min(pred.shape[1], expected.shape[1])
    right[:height, :width] = pred[:height, :width] == expected[:height, :width]
    return right


def grid_cell_accuracy(pred: np.ndarray, expected: np.ndarray) -> float:
    """Fraction of expected's cells that pred has right; a cell beyond pred's shape is wrong."""
    return float(_overlap_right(np.asarray(pred), np.asarray(expected)).mean())


def colour_accuracy(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[int, float]:
    """Per expected colour: fraction of its cells predicted right, over (pred, expected)
    pairs. Colours that never occur in an expected grid are left out."""
    right = np.zeros(10)
    total = np.zeros(10)
    for pred, expected in pairs:
        expected = np.asarray(expected)
        correct = _overlap_right(np.asarray(pred), expected)
        total += np.bincount(expected.ravel(), minlength=10)
        right += np.bincount(expected[correct].ravel(), minlength=10)
    return {colour: right[colour] / total[colour] for colour in range(10) if total[colour]}


def shape_accuracy(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Fraction of (pred, expected) pairs whose shapes match."""
    if not pairs:
        return float("nan")
    return sum(np.shape(p) == np.shape(e) for p, e in pairs) / len(pairs)


@dataclass
class SubmissionScore:
    task_scores: dict[str, float]        # pass@2: solved test inputs / test inputs
    task_scores_pass1: dict[str, float]  # the same with the first attempt only
    pass_at_1: float                     # mean task score over tasks (ARC Prize rule)
    pass_at_2: float
    test_inputs: int
    solved_pass1: int                    # test inputs solved by their first attempt
    solved_pass2: int                    # test inputs solved by one of two attempts


def score_submission(attempts: dict[str, list[list[np.ndarray]]],
                     solutions: dict[str, list[np.ndarray]]) -> SubmissionScore:
    """Official ARC Prize scoring. ``attempts[task_id][i]`` lists the attempts for test
    input i (only the first two count); ``solutions[task_id][i]`` is its expected output.
    A test input is solved when an attempt equals it exactly; a task scores the fraction
    of its test inputs solved; the final score is the mean over the solutions' tasks.
    Missing tasks or test inputs score 0."""
    task_scores, task_scores_pass1 = {}, {}
    solved1 = solved2 = test_inputs = 0
    for task_id, expected_outputs in solutions.items():
        task_attempts = attempts.get(task_id, [])
        hits1 = hits2 = 0
        for i, expected in enumerate(expected_outputs):
            tries = task_attempts[i][:MAX_ATTEMPTS] if i < len(task_attempts) else []
            hits = [grids_equal(np.asarray(t), np.asarray(expected)) for t in tries]
            hits1 += bool(hits) and hits[0]
            hits2 += any(hits)
        n = len(expected_outputs)
        task_scores[task_id] = hits2 / n
        task_scores_pass1[task_id] = hits1 / n
        solved1, solved2, test_inputs = solved1 + hits1, solved2 + hits2, test_inputs + n
    num_tasks = len(solutions)

    def mean(scores: dict[str, float]) -> float:
        return sum(scores.values()) / num_tasks if num_tasks else 0.0

    return SubmissionScore(task_scores, task_scores_pass1, mean(task_scores_pass1),
                           mean(task_scores), test_inputs, solved1, solved2)
