"""Repairing a grid from its own symmetries: pure numpy.

Many ARC tasks show a symmetric or periodic picture with a patch painted over in one
colour (the *mask*) and ask for the picture restored. ``repaired`` finds, from the input
grid alone, the mask colour and the grid's symmetries that every unmasked cell obeys
(repetition along rows or columns, mirroring about a row or column axis, reflection about
a diagonal, each axis anywhere, even outside the grid), and reads each masked cell from
the unmasked cells its symmetries map it to. The rule student may copy that reading
(``engine.rule_tree``); the network does not read it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

MIN_SUPPORT = 0.5    # a symmetry must pair at least half the unmasked cells,
MIN_PAIRS = 16       # and this many (a cell and its image, each way): on tiny grids chance agrees
MAX_ROUNDS = 4       # a masked cell may be reached through up to this many symmetries


@lru_cache(maxsize=64)
def _candidate_maps(height: int, width: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every candidate symmetry as (cells, their images), flat indices of the pairs whose
    image lies inside the grid: translations along each axis, mirrors about each row and
    column axis, reflections about each diagonal and anti-diagonal."""
    rows, cols = np.indices((height, width))
    maps: list[tuple[np.ndarray, np.ndarray]] = []

    def add(to_rows: np.ndarray, to_cols: np.ndarray) -> None:
        inside = (to_rows >= 0) & (to_rows < height) & (to_cols >= 0) & (to_cols < width)
        if inside.sum() >= 2:
            maps.append(((rows * width + cols)[inside], (to_rows * width + to_cols)[inside]))

    for shift in range(1, height):
        add(rows + shift, cols)
        add(rows - shift, cols)
    for shift in range(1, width):
        add(rows, cols + shift)
        add(rows, cols - shift)
    for axis in range(1, 2 * height - 2):     # row r <-> axis - r
        add(axis - rows, cols)
    for axis in range(1, 2 * width - 2):
        add(rows, axis - cols)
    for offset in range(-(width - 2), height - 1):   # (r, c) <-> (c + offset, r - offset)
        add(cols + offset, rows - offset)
    for total in range(1, height + width - 2):       # (r, c) <-> (total - c, total - r)
        add(total - cols, total - rows)
    return maps


def _obeyed(flat: np.ndarray, known: np.ndarray, maps) -> list[tuple[np.ndarray, np.ndarray]]:
    """The candidate symmetries every pair of known cells obeys, pairing at least
    MIN_SUPPORT of them and MIN_PAIRS (a cell its symmetry leaves in place is no evidence),
    the most supported first."""
    obeyed = []
    for cells, images in maps:
        both = known[cells] & known[images] & (cells != images)
        support = int(both.sum())
        if support >= max(MIN_PAIRS, MIN_SUPPORT * known.sum()) and \
                np.array_equal(flat[cells[both]], flat[images[both]]):
            obeyed.append((support, cells, images))
    obeyed.sort(key=lambda entry: -entry[0])
    return [(cells, images) for _, cells, images in obeyed]


def _fill(flat: np.ndarray, known: np.ndarray, obeyed) -> np.ndarray:
    """The grid's colours with each unknown cell read through the symmetries (the first
    that reaches a known cell wins); -1 where none does."""
    values = np.where(known, flat, -1)
    for _ in range(MAX_ROUNDS):
        changed = False
        for cells, images in obeyed:
            reads = (values[cells] < 0) & (values[images] >= 0)
            if reads.any():
                values[cells[reads]] = values[images[reads]]
                changed = True
        if not changed:
            break
    return values


def repaired(grid: np.ndarray) -> np.ndarray:
    """[H, W] the grid with its mask restored from its symmetries (-1 where a masked
    cell cannot be read). The mask is the colour without which the grid obeys the most
    symmetries (then: whose cells they restore most of); a painted-over patch breaks
    symmetries that the picture's own colours keep. A grid no colour of which can be
    restored is returned as it is."""
    grid = np.asarray(grid, dtype=np.int64)
    flat = grid.ravel()
    maps = _candidate_maps(*grid.shape)
    best, best_score = grid.copy(), (0, 0)
    for mask in np.unique(flat):
        known = flat != mask
        if not known.any():
            continue
        obeyed = _obeyed(flat, known, maps)
        values = _fill(flat, known, obeyed)
        score = (len(obeyed), int((values[~known] >= 0).sum()))
        if score[1] and score > best_score:
            best, best_score = values.reshape(grid.shape), score
    return best
