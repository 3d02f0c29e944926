"""Predicting ARC test inputs with a student: two distinct attempts per test input, from
test-time votes or the runner-up grid.

Shared by validation during training and by `sage-engine eval`, so both score the
same way: the official rule (a test input is solved when one of at most two attempts
equals the expected grid exactly, shape included; a task scores the fraction of its
test inputs solved; the final score is the mean over tasks).
"""

from __future__ import annotations

import numpy as np
import torch

from engine.arc import ArcTask, example_id
from engine.augment import augment_task, random_colour_permutation, undo_prediction, vote
from engine.encoding import batch_to, build_example, collate, decode_prediction
from engine.scoring import EvalResult, TestPrediction, grids_equal

__all__ = ["EvalResult", "TestPrediction", "evaluate_queries", "pick_device", "predict_grids"]

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


def _augmentations(votes: int, seed: int) -> list[tuple[int, np.ndarray]]:
    """Identity first, then ``votes - 1`` random dihedral x colour permutations."""
    rng = np.random.default_rng(seed)
    identity = np.arange(10)
    augs = [(0, identity)]
    for _ in range(max(0, votes - 1)):
        augs.append((int(rng.integers(8)), random_colour_permutation(rng)))
    return augs


def predict_grids(model, queries: list[tuple[ArcTask, str, int]], max_demos: int,
                  device: torch.device, features=None) -> list[np.ndarray]:
    """One predicted grid per query (see ``predict_grid_pairs``)."""
    return [best for best, _ in predict_grid_pairs(model, queries, max_demos, device, features)]


@torch.no_grad()
def predict_grid_pairs(model, queries: list[tuple[ArcTask, str, int]], max_demos: int,
                       device: torch.device, features=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query, the most likely grid and the runner-up (``runner_up_grid``). Queries
    are batched by length under a token budget, so a batch of 30x30 tasks (thousands of
    tokens each) does not exhaust memory and a batch of small ones is not padded to the
    longest."""
    examples = [build_example(t, k, i, max_demos) for t, k, i in queries]
    order = sorted(range(len(queries)), key=lambda i: len(examples[i]["tokens"]))
    grids: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(queries)
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
        batch = batch_to(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(batch).logits
        top2 = logits.float().log_softmax(-1).topk(2, dim=-1)
        for i, values, classes in zip(chunk, top2.values.cpu().numpy(), top2.indices.cpu().numpy()):
            grids[i] = runner_up_grid(classes, values[..., 0] - values[..., 1])
        start = end
    return grids


def runner_up_grid(classes: np.ndarray, gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(most likely grid, second most likely grid) from each canvas cell's two likeliest
    classes ``classes`` [30, 30, 2] and their log-probability gap ``gaps`` [30, 30].

    Under the model's per-cell distribution the second likeliest canvas differs from the
    likeliest in the one cell where the two top classes are closest; cells whose change
    leaves the decoded grid the same are skipped, so the runner-up is always distinct."""
    best_cells = classes[..., 0]
    best = decode_prediction(best_cells)
    for flat in np.argsort(gaps, axis=None, kind="stable"):
        row, col = divmod(int(flat), best_cells.shape[1])
        if not _can_change(best, row, col):
            continue
        cells = best_cells.copy()
        cells[row, col] = classes[row, col, 1]
        second = decode_prediction(cells)
        if not grids_equal(second, best):
            return best, second
    return best, best   # unreachable for a real canvas; kept total for safety


def _can_change(grid: np.ndarray, row: int, col: int) -> bool:
    """Whether a canvas cell can change the decoded grid: one inside it, or one on row 0
    or column 0 just beyond it (which extends the shape)."""
    height, width = grid.shape
    return (row < height and col < width) or (row == 0 and col == width) or (col == 0 and row == height)


def _query_key(query: tuple[ArcTask, str, int]) -> tuple[str, str, int]:
    task, kind, index = query
    return task.id, kind, index


def evaluate_queries(model, tasks: list[ArcTask], cfg, device: torch.device, features=None,
                     tta_votes: int | None = None, on_progress=None) -> EvalResult:
    """Predict every test input of ``tasks`` with two distinct attempts. With
    ``tta_votes`` > 1 (and a student that reads grids), each test input is predicted
    under that many augmentations, each prediction is mapped back, and the two most
    voted grids are attempts 1 and 2. Where the views yield only one distinct grid (or
    there is one view), attempt 2 is the runner-up grid of the un-augmented view."""
    votes = cfg.tta_votes if tta_votes is None else tta_votes
    if features is not None:
        votes = 1  # a features-only student cannot see an augmented grid
    queries = [(t, "test", i) for t in tasks for i in range(len(t.test))]
    candidates: list[list[np.ndarray]] = [[] for _ in queries]
    runner_ups: list[np.ndarray] = []
    augmentations = _augmentations(max(1, votes), cfg.seed)
    for n, (k, perm) in enumerate(augmentations):
        augmented = [(augment_task(t, k, perm) if n else t, kind, i) for t, kind, i in queries]
        pairs = predict_grid_pairs(model, augmented, cfg.max_demos, device, features)
        for slot, (grid, second) in enumerate(pairs):
            candidates[slot].append(undo_prediction(grid, k, perm) if n else grid)
            if n == 0:
                runner_ups.append(second)
        if on_progress is not None:
            on_progress(n + 1, len(augmentations))
    predictions = []
    for (task, _, index), grids, second in zip(queries, candidates, runner_ups):
        attempts = vote(grids)[:2]
        if len(attempts) < 2:
            attempts.append(second)
        pair = task.test[index]
        predictions.append(TestPrediction(task.id, index, pair.input, pair.output, attempts))
    return EvalResult(predictions)
