"""Grids to model inputs and targets, and model outputs back to grids.

Targets live on a 30x30 canvas with 11 classes: colours 0-9 and OUTSIDE for cells
beyond the grid, so a model predicts the output *shape* as well as its colours.
The student's input is a sequence of the real cells of every grid in the query's view
(never padded to 30x30, so small tasks stay short), each cell tagged with its row,
column and which grid it belongs to. Only ``collate`` needs torch.
"""

from __future__ import annotations

import numpy as np

from engine.arc import ArcTask, example_id, query_view
from engine.augment import original_task_id

CANVAS = 30
OUTSIDE = 10                 # class of a canvas cell that lies outside the grid
NUM_CLASSES = 11             # colours 0-9 + OUTSIDE
MAX_DEMOS = 10               # the most train pairs an ARC-AGI-1/2 task has
QUERY_SEGMENT = 2 * MAX_DEMOS    # segment id of the query input; demo k uses 2k and 2k+1
NUM_SEGMENTS = QUERY_SEGMENT + 1
PAD_TOKEN = 10               # token id of padding in a batch (colours are 0-9)
VOCAB_SIZE = 11
IGNORE_INDEX = -100          # target value of every cell of an unknown output


def encode_target(grid: np.ndarray) -> np.ndarray:
    """The grid on the 30x30 canvas; cells outside the grid are OUTSIDE."""
    height, width = grid.shape
    canvas = np.full((CANVAS, CANVAS), OUTSIDE, dtype=np.int64)
    canvas[:height, :width] = grid
    return canvas


def decode_prediction(cells: np.ndarray) -> np.ndarray:
    """The predicted grid: the top-left rectangle of non-OUTSIDE cells.

    Height = leading rows whose column-0 cell is a colour, width = leading columns of
    row 0 that are colours. An OUTSIDE cell inside that rectangle reads as 0. The result
    may be 0x0, which is simply a wrong answer.
    """
    inside = np.asarray(cells) != OUTSIDE
    height = int(np.cumprod(inside[:, 0]).sum())
    width = int(np.cumprod(inside[0, :]).sum())
    grid = np.asarray(cells)[:height, :width].copy()
    grid[grid == OUTSIDE] = 0
    return grid.astype(np.uint8)


def _grid_tokens(grid: np.ndarray, segment: int) -> tuple[np.ndarray, ...]:
    rows, cols = np.indices(grid.shape)
    return (grid.reshape(-1).astype(np.int64), rows.reshape(-1), cols.reshape(-1),
            np.full(grid.size, segment, dtype=np.int64))


def build_example(task: ArcTask, kind: str, index: int,
                  max_demos: int | None = None) -> dict:
    """One query for the standalone student, built from ``query_view`` only.

    Tokens are the colours of every real cell, row-major, of the query input first
    (so a model finds its tokens as a prefix), then demo 0 input, demo 0 output, ...
    At most MAX_DEMOS demos are used.
    "target" is the encoded query output, or None where it is unknown; "task_id" the
    task an augmented copy was made from (a student's task embedding is per task).
    """
    limit = MAX_DEMOS if max_demos is None else min(max_demos, MAX_DEMOS)
    demos, query_input = query_view(task, kind, index, max_demos=limit)
    parts = [_grid_tokens(query_input, QUERY_SEGMENT)]
    for k, demo in enumerate(demos):
        parts.append(_grid_tokens(demo.input, 2 * k))
        parts.append(_grid_tokens(demo.output, 2 * k + 1))
    tokens, rows, cols, segments = (np.concatenate(column) for column in zip(*parts))
    output = task.pairs(kind)[index].output
    return {
        "tokens": tokens,
        "rows": rows,
        "cols": cols,
        "segments": segments,
        "target": None if output is None else encode_target(output),
        "example_id": example_id(task.id, kind, index),
        "task_id": original_task_id(task.id),
    }


def collate(examples: list[dict], teacher: dict | None = None) -> dict:
    """Pad examples to the longest and stack them as tensors.

    "pad_mask" is True at padding. An unknown target is all IGNORE_INDEX (-100).
    ``teacher`` may hold already padded "teacher_features" [B, L, D] and
    "teacher_mask" [B, L] (True = real token); they are passed on as tensors.
    """
    import torch  # here, so the grid functions above stay usable without torch

    batch_size = len(examples)
    length = max(len(e["tokens"]) for e in examples)
    tokens = np.full((batch_size, length), PAD_TOKEN, dtype=np.int64)
    positions = {name: np.zeros((batch_size, length), dtype=np.int64)
                 for name in ("rows", "cols", "segments")}
    pad_mask = np.ones((batch_size, length), dtype=bool)
    targets = np.full((batch_size, CANVAS, CANVAS), IGNORE_INDEX, dtype=np.int64)
    for b, example in enumerate(examples):
        n = len(example["tokens"])
        tokens[b, :n] = example["tokens"]
        for name, array in positions.items():
            array[b, :n] = example[name]
        pad_mask[b, :n] = False
        if example["target"] is not None:
            targets[b] = example["target"]
    batch = {
        "tokens": torch.from_numpy(tokens),
        **{name: torch.from_numpy(array) for name, array in positions.items()},
        "pad_mask": torch.from_numpy(pad_mask),
        "target": torch.from_numpy(targets),
        "example_ids": [e["example_id"] for e in examples],
        "task_ids": [e["task_id"] for e in examples],
    }
    if teacher is not None:
        batch["teacher_features"] = torch.as_tensor(teacher["teacher_features"])
        batch["teacher_mask"] = torch.as_tensor(teacher["teacher_mask"], dtype=torch.bool)
    return batch


def batch_to(batch: dict, device, non_blocking: bool = False) -> dict:
    """A collated batch with its tensors on ``device`` (other entries, such as task ids, as they are)."""
    import torch

    return {key: value.to(device, non_blocking=non_blocking) if torch.is_tensor(value) else value
            for key, value in batch.items()}
