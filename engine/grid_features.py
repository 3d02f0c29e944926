"""What a per-task student reads about each output cell: pure numpy, no torch.

A per-task student predicts the colour of every cell of an output grid whose shape is
already known (inferred from the demonstrations, see ``engine.shapes``). For each output
cell it reads the input grid through several *alignments* (the four corners, nearest
resample, tiling, mirrored tiling, a crop, the input flipped, rotated or transposed,
panels of a split input), plus richer descriptions of the input cell it is aligned with
(the nearest coloured cell in each of 8 directions, which colours share its row and
column, the size of its object) and of the whole input (which colours occur, the most
and least frequent).

Every colour-indexed block has 10 channels, one per colour, so recolouring a grid by a
permutation is the same as permuting those channels: ``colour_channel_index`` gives the
channel order, and augmentation never recomputes features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOURS = 10
# Directions for the "nearest coloured cell" rays: (row step, column step).
RAY_DIRECTIONS = ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))
MAX_PANELS = 4
SIZE_BUCKETS = (1, 2, 4, 8, 16)   # object size one-hot: <=1, <=2, <=4, <=8, <=16, larger
VIEWS = 8                          # which dihedral transform the grids are seen under
RAY_DISTANCE_CELLS = 30.0          # a ray's distance channel holds cells / this


@dataclass(frozen=True)
class Layout:
    """The channel layout: names of the blocks in order, their widths, and which are
    colour-indexed (permuted by a recolouring)."""
    blocks: tuple[tuple[str, int, bool], ...]

    @property
    def channels(self) -> int:
        return sum(width for _, width, _ in self.blocks)


ALIGNMENTS = ("top_left", "top_right", "bottom_left", "bottom_right", "resample", "tile",
              "mirror_tile", "crop", "flip_left_right", "flip_up_down", "rotate_half",
              "transpose", "rotate_left", "rotate_right", "anti_transpose",
              "tile_flip_left_right", "tile_flip_up_down", "tile_rotate_half",
              "tile_transpose", "tile_rotate_left", "tile_rotate_right", "tile_anti_transpose",
              *(f"panel{i}" for i in range(MAX_PANELS)))
MAX_BLOCKS = 4   # which tile (block) of an enlarged output a cell is in, per axis


def _build_layout() -> Layout:
    blocks: list[tuple[str, int, bool]] = []
    for name in ALIGNMENTS:   # first in the layout: alignment a's colours start at 11 * a
        blocks += [(f"{name}", COLOURS, True), (f"{name}_valid", 1, False)]
    blocks.append(("block_histogram", COLOURS, True))
    blocks += [(f"ray{i}", COLOURS, True) for i in range(len(RAY_DIRECTIONS))]
    blocks += [(f"ray{i}_distance", 1, False) for i in range(len(RAY_DIRECTIONS))]
    blocks += [(name, COLOURS, True) for name in ("row_colours", "column_colours")]
    blocks += [("object_size", len(SIZE_BUCKETS) + 1, False), ("object_largest", 1, False),
               ("object_smallest", 1, False), ("object_edge", 1, False), ("same_colour_count", 1, False)]
    blocks += [("input_colours", COLOURS, True), ("most_frequent", COLOURS, True),
               ("least_frequent", COLOURS, True)]
    blocks += [("borders", 4, False), ("parity", 2, False), ("position", 2, False),
               ("block_row", MAX_BLOCKS, False), ("block_column", MAX_BLOCKS, False),
               ("view", VIEWS, False)]
    return Layout(tuple(blocks))


LAYOUT = _build_layout()
CHANNELS = LAYOUT.channels


def _colour_block_channels() -> np.ndarray:
    """[colour-indexed blocks, 10]: the channel of each colour in each such block."""
    starts, start = [], 0
    for _, width, is_colour in LAYOUT.blocks:
        if is_colour:
            starts.append(start)
        start += width
    return np.asarray(starts)[:, None] + np.arange(COLOURS)


# What each colour looks like from each output cell: gathered per colour, so that one
# set of weights can judge every colour alike.
COLOUR_BLOCK_CHANNELS = _colour_block_channels()


def colour_channel_index(perm: np.ndarray) -> np.ndarray:
    """Channel gather index that recolours features by ``perm`` (colour c -> perm[c]):
    ``features[index]`` equals the features of the recoloured grid."""
    index = np.arange(CHANNELS)
    index[COLOUR_BLOCK_CHANNELS[:, np.asarray(perm)]] = COLOUR_BLOCK_CHANNELS
    return index


def _one_hot(grid: np.ndarray) -> np.ndarray:
    """[10, H, W] one-hot of a colour grid; cells < 0 (nothing there) are all zero."""
    out = np.zeros((COLOURS, *grid.shape), dtype=np.float32)
    rows, cols = np.nonzero(grid >= 0)
    out[grid[rows, cols], rows, cols] = 1.0
    return out


def _gather(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """grid[rows, cols] with -1 wherever the coordinates fall outside the grid."""
    h, w = grid.shape
    valid = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    out = np.full(rows.shape, -1, dtype=np.int64)
    out[valid] = grid[rows[valid], cols[valid]]
    return out


def _read(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """An alignment's 11 channels: the colour one-hot of the aligned input cell, and valid."""
    values = _gather(grid, rows, cols)
    return np.concatenate([_one_hot(values), (values >= 0)[None].astype(np.float32)])


def _panels(input_shape: tuple[int, int], output_shape: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left corners of output-sized panels that tile the input, with gaps of 0 or 1
    cell (a separator line) between them, when the input splits that way."""
    def offsets(size: int, part: int) -> list[int]:
        for gap in (0, 1):
            count = (size + gap) // (part + gap)
            if count >= 1 and count * part + (count - 1) * gap == size:
                return [i * (part + gap) for i in range(count)]
        return []
    rows, cols = offsets(input_shape[0], output_shape[0]), offsets(input_shape[1], output_shape[1])
    panels = [(r, c) for r in rows for c in cols]
    return panels if len(panels) > 1 else []


def _rays(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each direction: the colour of the nearest non-zero cell strictly beyond each
    cell ([8, H, W], -1 when none) and its distance ([8, H, W], 0 when none)."""
    h, w = grid.shape
    colours = np.full((len(RAY_DIRECTIONS), h, w), -1, dtype=np.int64)
    distances = np.zeros((len(RAY_DIRECTIONS), h, w), dtype=np.float32)
    for d, (dr, dc) in enumerate(RAY_DIRECTIONS):
        # Walk against the direction, carrying the last non-zero cell seen.
        row_order = range(h - 1, -1, -1) if dr > 0 else range(h)
        col_order = range(w - 1, -1, -1) if dc > 0 else range(w)
        for r in row_order:
            for c in col_order:
                pr, pc = r + dr, c + dc
                if not (0 <= pr < h and 0 <= pc < w):
                    continue
                if grid[pr, pc] != 0:
                    colours[d, r, c], distances[d, r, c] = grid[pr, pc], 1.0
                elif colours[d, pr, pc] >= 0:
                    colours[d, r, c], distances[d, r, c] = colours[d, pr, pc], distances[d, pr, pc] + 1
    return colours, distances


def _components(grid: np.ndarray) -> np.ndarray:
    """Label of the 4-connected same-colour object of each non-zero cell (0 for colour 0)."""
    h, w = grid.shape
    labels = np.zeros((h, w), dtype=np.int64)
    current = 0
    for r in range(h):
        for c in range(w):
            if grid[r, c] == 0 or labels[r, c]:
                continue
            current += 1
            stack = [(r, c)]
            labels[r, c] = current
            while stack:
                y, x = stack.pop()
                for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                    if 0 <= ny < h and 0 <= nx < w and not labels[ny, nx] and grid[ny, nx] == grid[y, x]:
                        labels[ny, nx] = current
                        stack.append((ny, nx))
    return labels


def input_cell_features(grid: np.ndarray) -> np.ndarray:
    """Descriptions of each input cell that an aligned output cell may read: rays,
    row/column colours, object size. [C_cell, h, w]."""
    grid = np.asarray(grid, dtype=np.int64)
    h, w = grid.shape
    ray_colours, ray_distances = _rays(grid)
    parts = [_one_hot(ray_colours[d]) for d in range(len(RAY_DIRECTIONS))]
    parts.append(ray_distances / RAY_DISTANCE_CELLS)
    rows, cols = np.indices((h, w))
    presence = np.stack([(grid == c) for c in range(COLOURS)]).astype(np.float32)
    parts.append(np.broadcast_to(presence.max(axis=2, keepdims=True), (COLOURS, h, w)))
    parts.append(np.broadcast_to(presence.max(axis=1, keepdims=True), (COLOURS, h, w)))
    labels = _components(grid)
    sizes = np.bincount(labels.ravel())
    size = np.where(labels > 0, sizes[labels], 0)
    bucket = np.searchsorted(np.asarray(SIZE_BUCKETS), size)
    size_one_hot = np.zeros((len(SIZE_BUCKETS) + 1, h, w), np.float32)
    size_one_hot[bucket, rows, cols] = (labels > 0)
    parts.append(size_one_hot)
    object_sizes = sizes[1:]
    largest = (labels > 0) & (size == (object_sizes.max() if object_sizes.size else -1))
    smallest = (labels > 0) & (size == (object_sizes.min() if object_sizes.size else -1))
    padded = np.pad(labels, 1, constant_values=-1)
    edge = np.zeros((h, w), bool)
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        edge |= padded[1 + dr:1 + dr + h, 1 + dc:1 + dc + w] != labels
    counts = np.bincount(grid.ravel(), minlength=COLOURS)
    parts += [largest[None].astype(np.float32), smallest[None].astype(np.float32),
              (edge & (labels > 0))[None].astype(np.float32),
              (counts[grid] / grid.size)[None].astype(np.float32)]
    return np.concatenate(parts)



def global_features(grid: np.ndarray) -> np.ndarray:
    """[30]: which colours occur; the most and the least frequent non-zero colour."""
    counts = np.bincount(np.asarray(grid).ravel(), minlength=COLOURS).astype(np.float64)
    present = (counts > 0).astype(np.float32)
    most, least = np.zeros(COLOURS, np.float32), np.zeros(COLOURS, np.float32)
    nonzero = counts[1:]
    if nonzero.any():
        most[1 + int(np.argmax(nonzero))] = 1.0
        masked = np.where(nonzero > 0, nonzero, np.inf)
        least[1 + int(np.argmin(masked))] = 1.0
    return np.concatenate([present, most, least])


def cell_features(grid: np.ndarray, output_shape: tuple[int, int],
                  crop: tuple[int, int] | None = None, view: int = 0) -> np.ndarray:
    """Features [CHANNELS, H, W] of every cell of an output of ``output_shape`` for the
    input ``grid``. ``crop`` is the top-left corner of the input region the output is
    cut from, when the shape rule is a crop. ``view`` is the dihedral transform the task
    is seen under: a rule that is not symmetric (mirror left to right, fall down) differs
    from view to view, and the network can only tell them apart if it is told."""
    grid = np.asarray(grid, dtype=np.int64)
    h, w = grid.shape
    height, width = output_shape
    r, c = np.indices((height, width))
    dh, dw = height - h, width - w
    tile_r, tile_c = r % h, c % w
    mirror_r = np.where((r // h) % 2 == 0, tile_r, h - 1 - tile_r)
    mirror_c = np.where((c // w) % 2 == 0, tile_c, w - 1 - tile_c)
    far = np.full_like(r, -1)   # an alignment that does not apply reads nothing
    crop_r, crop_c = (r + crop[0], c + crop[1]) if crop is not None else (far, far)
    alignments = [(r, c), (r, c - dw), (r - dh, c), (r - dh, c - dw),
                  (r * h // height, c * w // width), (tile_r, tile_c), (mirror_r, mirror_c),
                  (crop_r, crop_c), (r, w - 1 - c), (h - 1 - r, c), (h - 1 - r, w - 1 - c)]
    # The transforms that swap rows and columns read a square input only.
    square = h == w
    alignments += [(c, r), (c, w - 1 - r), (h - 1 - c, r), (h - 1 - c, w - 1 - r)] if square else \
        [(far, far)] * 4
    alignments += [(tile_r, w - 1 - tile_c), (h - 1 - tile_r, tile_c), (h - 1 - tile_r, w - 1 - tile_c)]
    alignments += [(tile_c, tile_r), (tile_c, w - 1 - tile_r), (h - 1 - tile_c, tile_r),
                   (h - 1 - tile_c, w - 1 - tile_r)] if square else [(far, far)] * 4
    panels = _panels((h, w), (height, width))[:MAX_PANELS]
    alignments += [(r + pr, c + pc) for pr, pc in panels]
    alignments += [(far, far)] * (MAX_PANELS - len(panels))
    parts = [_read(grid, rows, cols) for rows, cols in alignments]

    histogram = np.zeros((COLOURS, height, width), np.float32)
    if h % height == 0 and w % width == 0 and (h, w) != (height, width):
        bh, bw = h // height, w // width
        blocks = grid.reshape(height, bh, width, bw).transpose(0, 2, 1, 3).reshape(height, width, -1)
        for colour in range(COLOURS):
            histogram[colour] = (blocks == colour).mean(-1)
    parts.append(histogram)

    # Rich descriptions of the aligned input cell: the crop when there is one, else the
    # top-left alignment (the same cell, for same-shape tasks).
    primary_r, primary_c = (crop_r, crop_c) if crop is not None else (r, c)
    inside = (primary_r >= 0) & (primary_r < h) & (primary_c >= 0) & (primary_c < w)
    described = input_cell_features(grid)
    rich = np.zeros((described.shape[0], height, width), np.float32)
    rich[:, inside] = described[:, primary_r[inside], primary_c[inside]]
    parts.append(rich)

    parts.append(np.broadcast_to(global_features(grid)[:, None, None], (3 * COLOURS, height, width)))
    borders = np.stack([r == 0, r == height - 1, c == 0, c == width - 1]).astype(np.float32)
    parity = np.stack([r % 2, c % 2]).astype(np.float32)
    position = np.stack([r / max(1, height - 1), c / max(1, width - 1)]).astype(np.float32)
    block_rows, block_cols = np.zeros((2, MAX_BLOCKS, height, width), np.float32)
    block_rows[np.minimum(r // h, MAX_BLOCKS - 1), r, c] = 1.0
    block_cols[np.minimum(c // w, MAX_BLOCKS - 1), r, c] = 1.0
    views = np.zeros((VIEWS, height, width), np.float32)
    views[view] = 1.0
    parts += [borders, parity, position, block_rows, block_cols, views]
    features = np.concatenate(parts).astype(np.float32)
    assert features.shape[0] == CHANNELS, (features.shape, CHANNELS)
    return features
