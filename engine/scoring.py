"""ARC scoring that tells the truth: every figure defined once, here.

Accuracy is measured over the real cells of the grids, never over the padded canvas;
a grid counts as solved only when it matches exactly, shape included. Training-batch
figures (``batch_metrics``) and held-out figures (``EvalResult.summary``) use the same
per-grid definitions and the same average (mean over grids). The grid-level functions
are pure numpy; ``batch_metrics`` works on torch tensors and imports torch only when
called, so this module (and the baselines built on it) loads without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from db.store import TaskScore, arc_score
from engine.encoding import IGNORE_INDEX, OUTSIDE

MAX_ATTEMPTS = 2   # official ARC Prize rule: two attempts per test input


def batch_metrics(logits, target) -> dict[str, float]:
    """Figures of a training batch: logits [B, 30, 30, 11] tensor, target [B, 30, 30]
    tensor (encoded with OUTSIDE beyond the grid; all IGNORE_INDEX where unknown, which
    are skipped). The predicted grid is decoded from the argmax exactly as
    ``engine.encoding.decode_prediction`` does, vectorised, and each figure is the one
    ``grid_figures`` defines, averaged over the batch's grids the same way
    ``EvalResult.summary`` averages them over test grids. ``examples``: grids scored.
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

    def per_grid(mask):
        return mask.sum(dim=(1, 2)).float()

    shape_right = (pred_height == expected_height) & (pred_width == expected_width)
    all_cells_right = per_grid(right) == per_grid(real)
    cell_acc = per_grid(right) / per_grid(in_pred | real)
    fg_cells = per_grid(foreground)
    has_fg = fg_cells > 0
    fg_acc = per_grid(right & foreground)[has_fg] / fg_cells[has_fg]
    return {
        "cell_acc": float(cell_acc.mean()),
        "fg_acc": float(fg_acc.mean()) if bool(has_fg.any()) else float("nan"),
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
    """Cells right over the cells of either grid, both anchored at the top-left corner.

    A grid of the right shape scores right cells / expected cells. A cell of expected
    that pred lacks is wrong, and so is every cell pred has beyond expected: a 6x6 answer
    to a 3x3 question scores at most 9/36, never 1."""
    pred, expected = np.asarray(pred), np.asarray(expected)
    common = min(pred.shape[0], expected.shape[0]) * min(pred.shape[1], expected.shape[1])
    either = expected.size + pred.size - common
    return float(_overlap_right(pred, expected).sum()) / either if either else 1.0


def grid_foreground_accuracy(pred: np.ndarray, expected: np.ndarray) -> float | None:
    """Fraction of expected's cells of colours 1-9 that pred has right (None where the
    expected grid is all 0): where cell accuracy hides a model that paints background."""
    pred, expected = np.asarray(pred), np.asarray(expected)
    foreground = expected != 0
    if not foreground.any():
        return None
    return float((_overlap_right(pred, expected) & foreground).sum() / foreground.sum())


def colour_accuracy(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[int, float]:
    """Per expected colour: fraction of its cells predicted right, pooled over the
    (pred, expected) pairs' cells. Colours that never occur in an expected grid are left out."""
    right = np.zeros(10)
    total = np.zeros(10)
    for pred, expected in pairs:
        expected = np.asarray(expected)
        correct = _overlap_right(np.asarray(pred), expected)
        total += np.bincount(expected.ravel(), minlength=10)
        right += np.bincount(expected[correct].ravel(), minlength=10)
    return {colour: right[colour] / total[colour] for colour in range(10) if total[colour]}


@dataclass
class SubmissionScore:
    tasks: list[TaskScore]               # per task, in the solutions' order
    pass_at_1: float                     # the ARC rule with the first attempt only
    pass_at_2: float                     # the ARC rule with up to two attempts
    test_inputs: int

    @property
    def task_scores(self) -> dict[str, float]:
        return {t.task_id: t.score for t in self.tasks}

    @property
    def task_scores_pass1(self) -> dict[str, float]:
        return {t.task_id: t.score_pass1 for t in self.tasks}

    @property
    def solved_pass1(self) -> int:
        return sum(t.solved_pass1 for t in self.tasks)

    @property
    def solved_pass2(self) -> int:
        return sum(t.solved_pass2 for t in self.tasks)


def score_submission(attempts: dict[str, list[list[np.ndarray]]],
                     solutions: dict[str, list[np.ndarray]]) -> SubmissionScore:
    """Official ARC Prize scoring. ``attempts[task_id][i]`` lists the attempts for test
    input i (only the first two count); ``solutions[task_id][i]`` is its expected output.
    A test input is solved when an attempt equals it exactly; a task scores the fraction
    of its test inputs solved; the final score is the mean over the solutions' tasks
    (``db.store.arc_score``). Missing tasks or test inputs score 0."""
    tasks = []
    for task_id, expected_outputs in solutions.items():
        task_attempts = attempts.get(task_id, [])
        hits1 = hits2 = 0
        for i, expected in enumerate(expected_outputs):
            tries = task_attempts[i][:MAX_ATTEMPTS] if i < len(task_attempts) else []
            hits = [grids_equal(np.asarray(t), np.asarray(expected)) for t in tries]
            hits1 += bool(hits) and hits[0]
            hits2 += any(hits)
        n = len(expected_outputs)
        tasks.append(TaskScore(0, task_id, n, hits1, hits2, hits2 / n))
    pass1, pass2 = arc_score(tasks)
    return SubmissionScore(tasks, pass1, pass2, sum(t.n_test_inputs for t in tasks))


@dataclass
class TestPrediction:
    __test__ = False   # not a pytest class, despite the name

    task_id: str
    test_index: int
    test_input: np.ndarray
    expected: np.ndarray | None
    attempts: list[np.ndarray]     # one or two grids, attempt 1 first

    def correct(self, attempt: int) -> bool:
        if self.expected is None or attempt >= len(self.attempts):
            return False
        return grids_equal(self.attempts[attempt], self.expected)

    def cell_accuracy(self, attempt: int) -> float | None:
        if self.expected is None or attempt >= len(self.attempts):
            return None
        return grid_cell_accuracy(self.attempts[attempt], self.expected)


# The figures of a set of test inputs, each defined once (README, "Metrics that tell the
# truth"). pass1/pass2 follow the ARC rule (mean over tasks); the grid figures are means
# over test grids of attempt 1; colour<N>_acc pools the cells of expected colour N.
FIGURES = ("pass1", "pass2", "cell_acc", "fg_acc", "shape_acc")


@dataclass
class EvalResult:
    predictions: list[TestPrediction]

    def score(self) -> SubmissionScore:
        attempts: dict[str, list[list[np.ndarray]]] = {}
        solutions: dict[str, list[np.ndarray]] = {}
        for p in sorted(self.predictions, key=lambda p: (p.task_id, p.test_index)):
            if p.expected is None:
                continue
            attempts.setdefault(p.task_id, []).append(p.attempts)
            solutions.setdefault(p.task_id, []).append(p.expected)
        return score_submission(attempts, solutions)

    @property
    def attempts_per_input(self) -> int:
        """Distinct attempts every test input has: 2 makes pass2 a real pass@2; with 1,
        pass2 can only equal pass1."""
        if not self.predictions:
            return 0
        return min(len({(a.shape, a.tobytes()) for a in p.attempts}) for p in self.predictions)

    def without(self, task_ids: set[str]) -> "EvalResult":
        return EvalResult([p for p in self.predictions if p.task_id not in task_ids])

    def summary(self) -> dict[str, float]:
        """Official scores plus the diagnostics that cannot flatter: cell accuracy over
        the cells of either grid, foreground and shape accuracy, per-colour accuracy."""
        known = [p for p in self.predictions if p.expected is not None]
        if not known:
            return {}
        score = self.score()
        first = [(p.attempts[0], p.expected) for p in known]
        foreground = [f for f in (grid_foreground_accuracy(a, e) for a, e in first) if f is not None]
        colours = colour_accuracy(first)
        return {
            "pass1": score.pass_at_1,
            "pass2": score.pass_at_2,
            "cell_acc": float(np.mean([grid_cell_accuracy(a, e) for a, e in first])),
            "fg_acc": float(np.mean(foreground)) if foreground else float("nan"),
            "shape_acc": float(np.mean([a.shape == e.shape for a, e in first])),
            # Where "94% of pixels" hides a model that only paints the background.
            **{f"colour{colour}_acc": float(acc) for colour, acc in colours.items()},
        }
