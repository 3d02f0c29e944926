"""Predicting ARC test inputs with a student, with optional test-time voting.

Shared by validation during training and by `sage-engine eval`, so both score the
same way: the official rule (a test input is solved when one of at most two attempts
equals the expected grid exactly, shape included; a task scores the fraction of its
test inputs solved; the final score is the mean over tasks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.arc import ArcTask, example_id
from engine.augment import augment_task, random_colour_permutation, undo_prediction, vote
from engine.encoding import build_example, collate, decode_prediction
from engine.scoring import colour_accuracy, grid_cell_accuracy, score_submission

PREDICT_BATCH = 32
PREDICT_TOKENS = 16_384   # padded tokens per prediction batch


def pick_device(spec: str, local_rank: int = 0) -> torch.device:
    from engine.runner import JobFailed

    if spec == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise JobFailed(f"device {spec} asked for, but torch sees no CUDA GPU here: "
                            f"use device=cpu or auto (or install the CUDA build of torch)")
        index = device.index if device.index is not None else local_rank
        if index >= torch.cuda.device_count():
            raise JobFailed(f"device {spec}: only {torch.cuda.device_count()} GPU(s) visible")
        return torch.device("cuda", index)
    return device


@dataclass
class TestPrediction:
    task_id: str
    test_index: int
    test_input: np.ndarray
    expected: np.ndarray | None
    attempts: list[np.ndarray]     # one or two grids, attempt 1 first

    def correct(self, attempt: int) -> bool:
        if self.expected is None or attempt >= len(self.attempts):
            return False
        guess = self.attempts[attempt]
        return guess.shape == self.expected.shape and bool((guess == self.expected).all())

    def cell_accuracy(self, attempt: int) -> float | None:
        if self.expected is None or attempt >= len(self.attempts):
            return None
        return grid_cell_accuracy(self.attempts[attempt], self.expected)


@dataclass
class EvalResult:
    predictions: list[TestPrediction]

    def score(self):
        attempts: dict[str, list[list[np.ndarray]]] = {}
        solutions: dict[str, list[np.ndarray]] = {}
        for p in sorted(self.predictions, key=lambda p: (p.task_id, p.test_index)):
            if p.expected is None:
                continue
            attempts.setdefault(p.task_id, []).append(p.attempts)
            solutions.setdefault(p.task_id, []).append(p.expected)
        return score_submission(attempts, solutions)

    def summary(self) -> dict[str, float]:
        """Official scores plus the diagnostics that cannot flatter: cell accuracy over
        the expected grid's real cells only, and shape accuracy."""
        known = [p for p in self.predictions if p.expected is not None]
        if not known:
            return {}
        score = self.score()
        colours = colour_accuracy([(p.attempts[0], p.expected) for p in known])
        return {
            "pass1": score.pass_at_1,
            "pass2": score.pass_at_2,
            "exact": float(np.mean([p.correct(0) for p in known])),
            "cell_acc": float(np.mean([p.cell_accuracy(0) for p in known])),
            "shape_acc": float(np.mean([p.attempts[0].shape == p.expected.shape for p in known])),
            # Where "94% of pixels" hides a model that only paints the background.
            **{f"colour{colour}_acc": float(acc) for colour, acc in colours.items()},
        }


def _augmentations(votes: int, seed: int) -> list[tuple[int, np.ndarray]]:
    """Identity first, then ``votes - 1`` random dihedral x colour permutations."""
    rng = np.random.default_rng(seed)
    identity = np.arange(10)
    augs = [(0, identity)]
    for _ in range(max(0, votes - 1)):
        augs.append((int(rng.integers(8)), random_colour_permutation(rng)))
    return augs


@torch.no_grad()
def predict_grids(model, queries: list[tuple[ArcTask, str, int]], max_demos: int,
                  device: torch.device, features=None) -> list[np.ndarray]:
    """One predicted grid per query. Queries are batched by length under a token budget,
    so a batch of 30x30 tasks (thousands of tokens each) does not exhaust memory and a
    batch of small ones is not padded to the longest."""
    examples = [build_example(t, k, i, max_demos) for t, k, i in queries]
    order = sorted(range(len(queries)), key=lambda i: len(examples[i]["tokens"]))
    grids: list[np.ndarray | None] = [None] * len(queries)
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    start = 0
    while start < len(order):
        end = start + 1
        # Sorted by length, so the padded batch costs (count x last length) tokens.
        while (end < len(order) and end - start < PREDICT_BATCH and
               (end + 1 - start) * len(examples[order[end]]["tokens"]) <= PREDICT_TOKENS):
            end += 1
        chunk = order[start:end]
        teacher = None
        if features is not None:
            feats, mask = features.batch([example_id(*_query_key(queries[i])) for i in chunk])
            teacher = {"teacher_features": feats, "teacher_mask": mask}
        batch = collate([examples[i] for i in chunk], teacher)
        batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(batch).logits
        for i, cells in zip(chunk, logits.argmax(-1).cpu().numpy()):
            grids[i] = decode_prediction(cells)
        start = end
    return grids


def _query_key(query: tuple[ArcTask, str, int]) -> tuple[str, str, int]:
    task, kind, index = query
    return task.id, kind, index


def evaluate_queries(model, tasks: list[ArcTask], cfg, device: torch.device, features=None,
                     tta_votes: int | None = None, on_progress=None) -> EvalResult:
    """Predict every test input of ``tasks``. With ``tta_votes`` > 1 (and a student that
    reads grids), each test input is predicted under that many augmentations, each
    prediction is mapped back, and the two most voted grids are attempts 1 and 2."""
    votes = cfg.tta_votes if tta_votes is None else tta_votes
    if features is not None:
        votes = 1  # a features-only student cannot see an augmented grid
    queries = [(t, "test", i) for t in tasks for i in range(len(t.test))]
    candidates: list[list[np.ndarray]] = [[] for _ in queries]
    augmentations = _augmentations(max(1, votes), cfg.seed)
    for n, (k, perm) in enumerate(augmentations):
        augmented = [(augment_task(t, k, perm) if n else t, kind, i) for t, kind, i in queries]
        for slot, grid in enumerate(predict_grids(model, augmented, cfg.max_demos, device, features)):
            candidates[slot].append(undo_prediction(grid, k, perm) if n else grid)
        if on_progress is not None:
            on_progress(n + 1, len(augmentations))
    predictions = []
    for (task, _, index), grids in zip(queries, candidates):
        attempts = vote(grids)[:2] if len(grids) > 1 else grids[:1]
        pair = task.test[index]
        predictions.append(TestPrediction(task.id, index, pair.input, pair.output, attempts))
    return EvalResult(predictions)
