"""The rule student: the simplest cell rule that explains a task's demonstrations.

It reads the same cell features as the per-task network (``engine.grid_features``) and
learns a small decision tree over them: each inner node asks one yes/no question about
an output cell ("is the aligned input cell red?", "is the nearest coloured cell to the
left the same colour as the one above?", "is the cell below coloured?"), each leaf
gives the cell its colour: either a constant colour or the colour read through one
feature ("the input rotated left", "the nearest coloured cell below", "the most
frequent colour", "the colour at the left end of its row", "the input repaired from its
own symmetries": ``engine.symmetry``),
or, where no tree of such leaves explains the task, the colour one feature names
passed through a table learned from the demonstrations ("red becomes blue, blue
becomes red"). Where the output keeps the input's shape the tree may also ask
questions about the input grid that the network does not read (``input_questions``:
"is the cell enclosed?", "is a neighbour blue?", "is it inside the blue cells' bounding
box?"). Trees grow greedily, a question at a time, and stop at the first
depth where every demonstration cell is explained; a task no shallow tree explains gets
no rule.

The network learns from augmented views and can memorise; the tree has no capacity to
spare, so when a shallow one reproduces every demonstration it is often the task's rule
(and nearly always when the tree fitted without each demonstration in turn still
predicts it: leave-one-out). It needs no training steps: numpy, well under a second
for a task of small grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.grid_features import CHANNELS, COLOURS, LAYOUT, RAY_DISTANCE_CELLS, _components
from engine.symmetry import repaired

Grid = np.ndarray
MAX_DEPTH = 5
TRIED = 3   # different splits tried at each node, best first, before a node gives up


def _block_starts() -> list[tuple[str, bool, int]]:
    """(name, colour-indexed, first channel) of every feature block."""
    starts = np.cumsum([0] + [width for _, width, _ in LAYOUT.blocks])
    return [(name, is_colour, int(start)) for (name, _, is_colour), start in zip(LAYOUT.blocks, starts)]


# (name, first channel) of the colour-indexed blocks that name ONE colour per cell (an
# alignment's cell, a ray's nearest cell, the most or least frequent colour): a leaf may copy it.
COPYABLE = [(name, start) for name, is_colour, start in _block_starts()
            if is_colour and name not in ("block_histogram", "row_colours", "column_colours", "input_colours")]
RAY_DISTANCES = [start for name, _, start in _block_starts() if name.startswith("ray") and name.endswith("_distance")]
PARITY = next(start for name, _, start in _block_starts() if name == "parity")   # row, then column


def _enclosed(grid: np.ndarray) -> np.ndarray:
    """Cells of the background (the most frequent colour) that no path through the
    background connects to the border: holes inside shapes."""
    height, width = grid.shape
    background = grid == np.bincount(grid.ravel(), minlength=COLOURS).argmax()
    reached = np.zeros_like(background)
    stack = [(r, c) for r in range(height) for c in range(width)
             if background[r, c] and (r in (0, height - 1) or c in (0, width - 1))]
    for r, c in stack:
        reached[r, c] = True
    while stack:
        y, x = stack.pop()
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < height and 0 <= nx < width and background[ny, nx] and not reached[ny, nx]:
                reached[ny, nx] = True
                stack.append((ny, nx))
    return background & ~reached


def _inside_box(mask: np.ndarray) -> np.ndarray:
    """Cells inside the bounding box of ``mask``'s cells (none where it has none)."""
    inside = np.zeros_like(mask)
    rows, cols = np.nonzero(mask)
    if len(rows):
        inside[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
    return inside


def _inside_object_boxes(grid: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Colour-0 cells inside the bounding box of an object (4-connected, one colour, two
    cells or more), given the grid's object ``labels`` (``_components``)."""
    sizes = np.bincount(labels.ravel())
    inside = np.zeros(grid.shape, dtype=bool)
    for label in range(1, len(sizes)):      # label 0: colour 0, no object
        if sizes[label] > 1:
            inside |= _inside_box(labels == label)
    return inside & (grid == 0)


ORTHOGONAL = ((-1, 0), (1, 0), (0, -1), (0, 1))
DIAGONAL = ((-1, -1), (-1, 1), (1, -1), (1, 1))


def _neighbour_colours(grid: np.ndarray, steps=ORTHOGONAL + DIAGONAL) -> np.ndarray:
    """[10, H, W]: one of the cell's neighbours (one step away, in ``steps``) has colour c."""
    height, width = grid.shape
    padded = np.pad(grid, 1, constant_values=-1)
    near = np.zeros((COLOURS, height, width), dtype=bool)
    for dy, dx in steps:
        shifted = padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
        near |= shifted[None] == np.arange(COLOURS)[:, None, None]
    return near


def _region_touches(grid: np.ndarray) -> np.ndarray:
    """[10, H, W]: the cell's region (its 4-connected cells of its own colour, background
    included) borders a cell of colour c: "the empty area that touches blue"."""
    labels = _components(grid + 1)          # + 1: colour 0 is labelled like the others
    touches = np.zeros((labels.max() + 1, COLOURS), dtype=bool)
    for here, there in ((np.s_[:-1, :], np.s_[1:, :]), (np.s_[:, :-1], np.s_[:, 1:])):
        for a, b in ((here, there), (there, here)):   # each pair of neighbours, both ways
            differ = grid[a] != grid[b]
            touches[labels[a][differ], grid[b][differ]] = True
    return touches[labels].transpose(2, 0, 1)


SIZES_AT_LEAST = tuple(range(2, 10))   # "the cell's object has at least k cells"
DEPTHS_AT_LEAST = (2, 3, 4)            # "the cell lies at least k cells inside its object"


def _object_sizes_at_least(labels: np.ndarray) -> list[np.ndarray]:
    """One grid per ``SIZES_AT_LEAST`` entry: the cell's object (4-connected, one colour,
    colour 0 none: ``labels`` from ``_components``) has at least that many cells: "the
    red shapes of four cells or more"."""
    size = np.where(labels > 0, np.bincount(labels.ravel())[labels], 0)
    return [size >= k for k in SIZES_AT_LEAST]


def _depths_at_least(labels: np.ndarray) -> list[np.ndarray]:
    """One grid per ``DEPTHS_AT_LEAST`` entry: every cell within k - 1 steps (any of the 8
    directions) belongs to the cell's object (``labels`` from ``_components``): concentric
    rings of a filled shape."""
    height, width = labels.shape
    inside = labels > 0
    depths = []
    for _ in range(max(DEPTHS_AT_LEAST) - 1):
        padded = np.pad(np.where(inside, labels, -1), 1, constant_values=-1)
        eroded = inside.copy()
        for dy, dx in ORTHOGONAL + DIAGONAL:
            eroded &= padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width] == labels
        inside = eroded
        depths.append(inside)
    return [depths[k - 2] for k in DEPTHS_AT_LEAST]


def _uniform_lines(grid: np.ndarray) -> list[np.ndarray]:
    """The cell's row has one colour; its column has one colour: "the empty row between"."""
    rows = (grid == grid[:, :1]).all(1, keepdims=True)
    columns = (grid == grid[:1]).all(0, keepdims=True)
    return [np.broadcast_to(rows, grid.shape), np.broadcast_to(columns, grid.shape)]


def _objects_with_holes(labels: np.ndarray, enclosed: np.ndarray) -> np.ndarray:
    """The cell's object (``labels`` from ``_components``) borders an enclosed cell
    (``_enclosed``): "the shapes with a hole turn azure"."""
    height, width = labels.shape
    padded = np.pad(enclosed, 1)
    beside_hole = np.zeros_like(enclosed)
    for dy, dx in ORTHOGONAL:
        beside_hole |= padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
    holding = np.unique(labels[beside_hole & (labels > 0)])
    return np.isin(labels, holding) & (labels > 0)


def _stripe_positions(shape: tuple[int, int]) -> list[np.ndarray]:
    """Where the cell lies in a stripe pattern counted from an edge, which the network's
    parity (from the top-left corner only) misses when the grids' sizes differ: its row
    counted from the bottom, its column counted from the right, is even; its row or
    column counted from each of the four edges is k mod 3 ("every third column from the
    right turns magenta")."""
    height, width = shape
    rows, columns = np.indices(shape)
    from_bottom, from_right = height - 1 - rows, width - 1 - columns
    positions = [from_bottom % 2 == 0, from_right % 2 == 0]
    for distance in (rows, columns, from_bottom, from_right):
        positions += [distance % 3 == k for k in range(3)]
    return positions


STRIPE_POSITIONS = 2 + 4 * 3
# enclosed, two bounding boxes, colours' boxes, neighbours (8 and diagonal), regions, object
# sizes, depths, single-colour row and column, stripes, and whether the object has a hole
YES_NO_QUESTIONS = (3 + (COLOURS - 1) + 3 * COLOURS + len(SIZES_AT_LEAST) + len(DEPTHS_AT_LEAST) + 2
                    + STRIPE_POSITIONS + 1)
EDGES = ("row_left_edge", "row_right_edge", "column_top_edge", "column_bottom_edge")
# then the repaired colour and whether it names one, then the colour at each edge
INPUT_QUESTIONS = YES_NO_QUESTIONS + COLOURS + 1 + len(EDGES) * COLOURS


def _edge_colours(grid: np.ndarray) -> list[np.ndarray]:
    """The colour of the input cell at the end of the cell's row and column, one grid per
    ``EDGES`` entry: where a border row or column is a legend ("recolour each grey cell
    with the colour at the left of its row")."""
    height, width = grid.shape
    return [np.repeat(grid[:, :1], width, 1), np.repeat(grid[:, -1:], width, 1),
            np.repeat(grid[:1], height, 0), np.repeat(grid[-1:], height, 0)]


def input_questions(grid: np.ndarray, output_shape: tuple[int, int],
                    crop: tuple[int, int] | None = None) -> np.ndarray:
    """[INPUT_QUESTIONS, H, W] channels about the input grid (in the task's frame) for an
    output of ``output_shape``. Where the output keeps the input's shape, yes/no: the cell
    is enclosed; inside an object's bounding box; inside the bounding box of every
    coloured cell; inside the bounding box of colour c (1-9); next to colour c (0-9): any of
    its 8 neighbours, or one of the 4 diagonal to it; its region (its colour's 4-connected
    cells) borders colour c; its object has at least k cells; it lies at least k cells
    inside its object; its row, its column has one colour; its row or column counted from
    an edge is even, or k mod 3; its object has a hole. Then,
    there or where the output is cut from the input at ``crop`` (its top-left corner), the
    colour of the cell in the input repaired from its own symmetries (``engine.symmetry``;
    one-hot, and whether it names one), a colour a leaf may copy. All zero otherwise,
    since the output's cells then have no input cell of their own."""
    grid = np.asarray(grid, dtype=np.int64)
    height, width = output_shape
    if grid.shape == (height, width):
        objects = _components(grid)
        enclosed = _enclosed(grid)
        channels = [enclosed, _inside_object_boxes(grid, objects), _inside_box(grid > 0)]
        channels += [_inside_box(grid == colour) for colour in range(1, COLOURS)]
        channels += list(_neighbour_colours(grid)) + list(_neighbour_colours(grid, DIAGONAL))
        channels += list(_region_touches(grid))
        channels += _object_sizes_at_least(objects) + _depths_at_least(objects) + _uniform_lines(grid)
        channels += _stripe_positions(grid.shape) + [_objects_with_holes(objects, enclosed)]
        restored = repaired(grid)
        edges = _edge_colours(grid)
    elif crop is not None:
        channels = [np.zeros((height, width), dtype=bool)] * YES_NO_QUESTIONS
        restored = np.full((height, width), -1)
        part = repaired(grid)[crop[0]:crop[0] + height, crop[1]:crop[1] + width]
        restored[:part.shape[0], :part.shape[1]] = part
        edges = [np.full((height, width), -1)] * len(EDGES)
    else:
        return np.zeros((INPUT_QUESTIONS, height, width), dtype=np.float32)
    channels += [restored == colour for colour in range(COLOURS)] + [restored >= 0]
    channels += [edge == colour for edge in edges for colour in range(COLOURS)]
    return np.stack(channels).astype(np.float32)


# The repaired input's colour and the edges' colours, the last copyable blocks: after the
# network's features and the yes/no input questions.
COPYABLE.append(("repaired", CHANNELS + YES_NO_QUESTIONS))
COPYABLE.extend((name, CHANNELS + YES_NO_QUESTIONS + COLOURS + 1 + k * COLOURS) for k, name in enumerate(EDGES))


@dataclass(frozen=True)
class Leaf:
    colour: int | None = None     # a constant colour, or
    copy: int | None = None       # the index in COPYABLE of the block whose colour is copied,
    recolour: tuple[int, ...] | None = None   # through this table (-1: a colour never seen)


@dataclass(frozen=True)
class Node:
    question: int                 # index into the question table (see _questions)
    yes: "Node | Leaf"
    no: "Node | Leaf"


def _read_colours(features: np.ndarray) -> np.ndarray:
    """[cells, copyable blocks]: the colour each copyable block names for each cell, -1
    where it names none (an alignment that reads outside the input)."""
    colours = np.full((features.shape[0], len(COPYABLE)), -1, dtype=np.int64)
    for b, (_, start) in enumerate(COPYABLE):
        if start + COLOURS > features.shape[1]:
            continue                    # features without the input questions: no repaired input
        block = features[:, start:start + COLOURS]
        named = block.max(1) > 0.5
        colours[named, b] = block[named].argmax(1)
    return colours


def _questions(features: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """[cells, questions] booleans: every binary feature channel is set; every pair of
    copyable blocks names the same colour; the nearest coloured cell in each direction is
    the next cell; the cell is a black square of a checkerboard (row and column parity agree)."""
    binary = features > 0.5
    first, second = np.triu_indices(len(COPYABLE), k=1)
    same = (colours[:, first] == colours[:, second]) & (colours[:, first] >= 0)
    adjacent = np.isclose(features[:, RAY_DISTANCES], 1 / RAY_DISTANCE_CELLS)
    checkerboard = binary[:, PARITY] == binary[:, PARITY + 1]
    return np.concatenate([binary, same, adjacent, checkerboard[:, None]], axis=1)


def _explained(colours: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[cells, actions]: which leaf actions (10 constants, then each copyable block) give
    each cell its target colour."""
    constants = targets[:, None] == np.arange(COLOURS)[None]
    copies = colours == targets[:, None]
    return np.concatenate([constants, copies], axis=1)


def _leaf(action: int) -> Leaf:
    return Leaf(colour=action) if action < COLOURS else Leaf(copy=action - COLOURS)


def _recolouring_leaf(colours: np.ndarray, targets: np.ndarray) -> Leaf | None:
    """A leaf that copies a block's colour through a table, where one table maps the
    colour that block names to the target colour in every cell ("red becomes blue")."""
    for block in range(colours.shape[1]):
        named = colours[:, block]
        if (named < 0).any():
            continue
        table = np.full(COLOURS, -1)
        table[named] = targets
        if np.array_equal(table[named], targets):
            return Leaf(copy=block, recolour=tuple(int(c) for c in table))
    return None


def _grow(questions: np.ndarray, explained: np.ndarray, colours: np.ndarray, targets: np.ndarray,
          depth: int, recolour: bool) -> Node | Leaf | None:
    """The tree (at most ``depth`` questions deep) that explains every cell, or None."""
    counts = explained.sum(0)
    best = int(np.argmax(counts))
    if counts[best] == len(explained):
        return _leaf(best)
    recolouring = _recolouring_leaf(colours, targets) if recolour else None
    if recolouring is not None:
        return recolouring
    if depth == 0:
        return None
    # The question after which one action per side explains the most cells, counting
    # again the cells of a side one action explains entirely: a side that needs no more
    # questions is worth more than a larger one that does.
    yes_counts = questions.T.astype(np.float32) @ explained.astype(np.float32)   # [questions, actions]
    no_counts = counts[None].astype(np.float32) - yes_counts
    yes_best, no_best = yes_counts.max(1), no_counts.max(1)
    yes_size = questions.sum(0)
    no_size = len(explained) - yes_size
    finished = np.where(yes_best == yes_size, yes_size, 0) + np.where(no_best == no_size, no_size, 0)
    score = yes_best + no_best + finished
    splits = questions.any(0) & ~questions.all(0)
    if not splits.any():
        return None
    tried: list[np.ndarray] = []
    for question in np.argsort(-np.where(splits, score, -1), kind="stable"):
        if not splits[question] or len(tried) == TRIED:
            break
        answer = questions[:, question]
        # Many features ask the same thing of these cells ("is it 0?" through each
        # alignment): a question that splits them as one already tried is no new try.
        if any(np.array_equal(answer, seen) or np.array_equal(answer, ~seen) for seen in tried):
            continue
        tried.append(answer)
        yes = _grow(questions[answer], explained[answer], colours[answer], targets[answer],
                    depth - 1, recolour)
        no = None if yes is None else _grow(questions[~answer], explained[~answer], colours[~answer],
                                            targets[~answer], depth - 1, recolour)
        if yes is not None and no is not None:
            return Node(int(question), yes, no)
    return None


def _apply(tree: Node | Leaf, questions: np.ndarray, colours: np.ndarray) -> np.ndarray:
    if isinstance(tree, Leaf):
        if tree.colour is not None:
            return np.full(len(questions), tree.colour, dtype=np.int64)
        named = colours[:, tree.copy]
        if tree.recolour is None:
            return named
        return np.where(named >= 0, np.asarray(tree.recolour)[named], -1)
    answer = questions[:, tree.question]
    out = np.empty(len(questions), dtype=np.int64)
    out[answer] = _apply(tree.yes, questions[answer], colours[answer])
    out[~answer] = _apply(tree.no, questions[~answer], colours[~answer])
    return out


def depth_of(tree: Node | Leaf) -> int:
    return 0 if isinstance(tree, Leaf) else 1 + max(depth_of(tree.yes), depth_of(tree.no))


@dataclass
class RuleFit:
    tree: Node | Leaf
    depth: int
    leave_one_out: float          # share of demonstrations predicted by the tree fitted without them


def _cells(features: np.ndarray) -> np.ndarray:
    """[C, H, W] -> [H * W, C]"""
    return features.reshape(features.shape[0], -1).T


def fit_rule(demo_features: list[np.ndarray], demo_outputs: list[Grid]) -> Node | Leaf | None:
    """The shallowest tree (growing depth by depth) that explains every demonstration cell;
    leaves that recolour through a table only where no tree without them does (a table
    explains many cells on its own, so it would displace the simpler rules)."""
    features = np.concatenate([_cells(f) for f in demo_features])
    targets = np.concatenate([np.asarray(o, dtype=np.int64).ravel() for o in demo_outputs])
    colours = _read_colours(features)
    questions, explained = _questions(features, colours), _explained(colours, targets)
    for recolour in (False, True):
        for depth in range(MAX_DEPTH + 1):
            tree = _grow(questions, explained, colours, targets, depth, recolour)
            if tree is not None:
                return tree
    return None


def predict_rule(tree: Node | Leaf, features: np.ndarray) -> Grid | None:
    """The output grid for one input's features [C, H, W]; None where a leaf copies a
    block that names no colour there (the rule does not apply to this input)."""
    cells = _cells(features)
    colours = _read_colours(cells)
    out = _apply(tree, _questions(cells, colours), colours)
    if (out < 0).any():
        return None
    return out.reshape(features.shape[1:]).astype(np.uint8)


def learn_rule(demo_features: list[np.ndarray], demo_outputs: list[Grid]) -> RuleFit | None:
    """Fit the rule on every demonstration, and measure how well the rule fitted without
    each demonstration predicts it."""
    tree = fit_rule(demo_features, demo_outputs)
    if tree is None:
        return None
    hits = 0
    for i in range(len(demo_features)):
        rest = [f for j, f in enumerate(demo_features) if j != i]
        held = fit_rule(rest, [o for j, o in enumerate(demo_outputs) if j != i]) if rest else None
        if held is not None:
            predicted = predict_rule(held, demo_features[i])
            hits += predicted is not None and np.array_equal(predicted, demo_outputs[i])
    return RuleFit(tree, depth_of(tree), hits / len(demo_features))
