"""Task augmentation (8 dihedral transforms x colour permutations x translations) and voting.

Colour 0 (the usual background) stays fixed; colours 1-9 are permuted. A prediction
for an augmented task is mapped back with ``undo_prediction`` before voting.
Translations shift every grid of a task down and right by the same offset, padding
with colour 0; they augment training queries only, so no prediction is ever mapped
back through one.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.arc import ArcTask, Pair

NUM_DIHEDRAL = 8
CANVAS = 30            # the largest ARC grid side; a translated grid stays within it
AUGMENTED = "~"        # separates a task's id from the name of its augmentation
# The inverse of transform k: rotations by k quarter turns undo with 4 - k; the four
# transforms that flip first are reflections, which undo themselves.
_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)


def dihedral(grid: np.ndarray, k: int) -> np.ndarray:
    """Transform k of the dihedral group: 0-3 rotate by k quarter turns, 4-7 transpose
    and then rotate by k - 4 quarter turns."""
    if not 0 <= k < NUM_DIHEDRAL:
        raise ValueError(f"dihedral transform must be 0-7, not {k}")
    if k >= 4:
        grid = grid.T
    return np.ascontiguousarray(np.rot90(grid, k % 4))


def inverse_dihedral(grid: np.ndarray, k: int) -> np.ndarray:
    """Undo ``dihedral(grid, k)``."""
    return dihedral(grid, _INVERSE[k])


def random_colour_permutation(rng: np.random.Generator) -> np.ndarray:
    """A lookup table [10]: colour c becomes table[c]; 0 stays 0, 1-9 are shuffled."""
    return np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)


def _transform(grid: np.ndarray | None, k: int, perm: np.ndarray) -> np.ndarray | None:
    return None if grid is None else dihedral(perm[grid], k)


def augment_task(task: ArcTask, k: int, perm: np.ndarray) -> ArcTask:
    """The task with every grid recoloured by ``perm`` and transformed by dihedral k.
    Its id names the augmentation (the identity keeps the original id), so features
    or predictions keyed by example id never mix augmented copies with the original."""
    perm = np.asarray(perm, dtype=np.uint8)

    def pairs(original: tuple[Pair, ...]) -> tuple[Pair, ...]:
        return tuple(Pair(_transform(p.input, k, perm), _transform(p.output, k, perm))
                     for p in original)

    identity = k == 0 and np.array_equal(perm, np.arange(10))
    task_id = task.id if identity else f"{task.id}{AUGMENTED}d{k}c{''.join(map(str, perm[1:]))}"
    return replace(task, id=task_id, train=pairs(task.train), test=pairs(task.test))


def original_task_id(task_id: str) -> str:
    """The id of the task an augmented copy was made from (the id itself if none)."""
    return task_id.split(AUGMENTED, 1)[0]


def _grids(task: ArcTask):
    for pair in task.train + task.test:
        yield pair.input
        if pair.output is not None:
            yield pair.output


def translation_room(task: ArcTask) -> tuple[int, int]:
    """The largest (down, right) shift that keeps every grid of the task within 30x30."""
    return (CANVAS - max(g.shape[0] for g in _grids(task)),
            CANVAS - max(g.shape[1] for g in _grids(task)))


def translate(grid: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The grid shifted down by dy and right by dx, the cells it leaves filled with 0."""
    shifted = np.zeros((grid.shape[0] + dy, grid.shape[1] + dx), dtype=grid.dtype)
    shifted[dy:, dx:] = grid
    return shifted


def untranslate(grid: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Undo ``translate``."""
    return grid[dy:, dx:]


def translate_task(task: ArcTask, dy: int, dx: int) -> ArcTask:
    """Every grid of the task shifted by the same (dy, dx); the id names the shift."""
    room = translation_room(task)
    if not (0 <= dy <= room[0] and 0 <= dx <= room[1]):
        raise ValueError(f"shift ({dy}, {dx}) leaves the 30x30 canvas; this task has room for {room}")
    if dy == dx == 0:
        return task

    def pairs(original: tuple[Pair, ...]) -> tuple[Pair, ...]:
        return tuple(Pair(translate(p.input, dy, dx),
                          None if p.output is None else translate(p.output, dy, dx))
                     for p in original)

    return replace(task, id=f"{task.id}{AUGMENTED}t{dy},{dx}", train=pairs(task.train),
                   test=pairs(task.test))


def random_translation(task: ArcTask, kind: str, max_shift: int,
                       rng: np.random.Generator) -> ArcTask:
    """The task a training query of ``kind`` reads, shifted by a random offset of up to
    ``max_shift`` cells each way, within the room its grids leave (none: no shift).
    A demonstration query's task drops its test pairs first: it does not read them, and
    an evaluation task's test output (eval_demos) must not steer the draw."""
    if kind == "train":
        task = replace(task, test=())
    room_down, room_right = translation_room(task)
    dy = int(rng.integers(min(max_shift, max(0, room_down)) + 1))
    dx = int(rng.integers(min(max_shift, max(0, room_right)) + 1))
    return translate_task(task, dy, dx)


def undo_prediction(grid: np.ndarray, k: int, perm: np.ndarray) -> np.ndarray:
    """Map a prediction for the augmented task back to the original task's frame."""
    inverse_perm = np.argsort(np.asarray(perm)).astype(np.uint8)
    return inverse_dihedral(inverse_perm[np.asarray(grid)], k)


def vote(candidates: list[np.ndarray]) -> list[np.ndarray]:
    """Distinct grids, most frequent first; ties keep the order of first appearance.
    The first two are attempts 1 and 2."""
    counts: dict[tuple, int] = {}
    first_seen: dict[tuple, np.ndarray] = {}
    for grid in candidates:
        grid = np.asarray(grid, dtype=np.uint8)   # equal grids must give equal keys
        key = (grid.shape, grid.tobytes())
        counts[key] = counts.get(key, 0) + 1
        first_seen.setdefault(key, grid)
    ranked = sorted(counts, key=lambda key: -counts[key])   # sorted() is stable
    return [first_seen[key] for key in ranked]
