"""The rule student: the shallowest decision tree over the cell features that explains
every demonstration cell, checked by leave-one-out, in numpy."""

from __future__ import annotations

import numpy as np

from engine.grid_features import CHANNELS, cell_features
from engine.rule_tree import (COPYABLE, INPUT_QUESTIONS, Leaf, Node, fit_rule, input_questions,
                              learn_rule, predict_rule)


def random_grid(rng, shape, colours=4):
    return rng.integers(0, colours, size=shape).astype(np.uint8)


def features(grids_and_shapes):
    return [cell_features(grid, shape) for grid, shape in grids_and_shapes]


def with_input_questions(grid, shape):
    return np.concatenate([cell_features(grid, shape), input_questions(grid, shape)])


def outlines(rng, shape, count):
    """Hollow rectangles of colour 2 on colour 0, each at least 3x3 (so it has a hole)."""
    grid = np.zeros(shape, np.uint8)
    for _ in range(count):
        h, w = rng.integers(3, 6, size=2)
        r, c = rng.integers(0, shape[0] - h + 1), rng.integers(0, shape[1] - w + 1)
        grid[r:r + h, c:c + w] = 2
        grid[r + 1:r + h - 1, c + 1:c + w - 1] = 0
    return grid


def fill_holes(grid):
    """Fill with 4 what no path of 0s links to the border (the answer, computed apart)."""
    out = grid.copy()
    outside = np.zeros(grid.shape, bool)
    frontier = [(r, c) for r in range(grid.shape[0]) for c in range(grid.shape[1])
                if grid[r, c] == 0 and (r in (0, grid.shape[0] - 1) or c in (0, grid.shape[1] - 1))]
    while frontier:
        r, c = frontier.pop()
        if 0 <= r < grid.shape[0] and 0 <= c < grid.shape[1] and grid[r, c] == 0 and not outside[r, c]:
            outside[r, c] = True
            frontier += [(r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)]
    out[(grid == 0) & ~outside] = 4
    return out


def test_a_rotation_is_one_leaf_that_copies_the_rotated_input():
    rng = np.random.default_rng(0)
    inputs = [random_grid(rng, (4, 4), colours=10) for _ in range(3)]
    outputs = [np.rot90(g) for g in inputs]
    fit = learn_rule(features([(g, o.shape) for g, o in zip(inputs, outputs)]), outputs)
    assert fit.depth == 0 and fit.tree == Leaf(copy=[name for name, _ in COPYABLE].index("rotate_left"))
    assert fit.leave_one_out == 1.0
    test = random_grid(rng, (5, 5), colours=10)
    np.testing.assert_array_equal(predict_rule(fit.tree, cell_features(test, test.shape)), np.rot90(test))


def test_a_colour_map_is_learned_by_asking_the_input_cell_its_colour():
    mapping = np.array([0, 5, 6, 4])       # 1 -> 5, 2 -> 6, 3 -> 4, background kept
    rng = np.random.default_rng(1)
    inputs = [random_grid(rng, (3, 5)) for _ in range(4)]
    fit = learn_rule(features([(g, g.shape) for g in inputs]), [mapping[g] for g in inputs])
    assert fit is not None and 1 <= fit.depth <= 3 and fit.leave_one_out == 1.0
    test = random_grid(rng, (6, 4))
    np.testing.assert_array_equal(predict_rule(fit.tree, cell_features(test, test.shape)), mapping[test])


def test_noise_has_no_shallow_rule():
    rng = np.random.default_rng(2)
    inputs = [random_grid(rng, (6, 6)) for _ in range(3)]
    outputs = [random_grid(rng, (6, 6), colours=10) for _ in range(3)]
    assert fit_rule(features([(g, o.shape) for g, o in zip(inputs, outputs)]), outputs) is None
    assert learn_rule(features([(g, o.shape) for g, o in zip(inputs, outputs)]), outputs) is None


def test_leave_one_out_sees_a_rule_that_each_demonstration_alone_teaches():
    # Each demonstration shows how ONE colour maps: the full tree explains them all, but
    # the tree fitted without a demonstration has never seen that demonstration's colour.
    inputs = [np.full((2, 2), colour, np.uint8) for colour in (1, 2, 3)]
    outputs = [np.full((2, 2), colour + 5, np.uint8) for colour in (1, 2, 3)]
    fit = learn_rule(features([(g, o.shape) for g, o in zip(inputs, outputs)]), outputs)
    assert fit is not None and fit.leave_one_out == 0.0


def test_a_rule_that_reads_nothing_there_gives_no_grid():
    # Copying the input's top-right-aligned cell into a wider output reads outside the input.
    grid = np.array([[1, 2], [3, 4]], np.uint8)
    top_right = [name for name, _ in COPYABLE].index("top_right")
    assert predict_rule(Leaf(copy=top_right), cell_features(grid, (2, 2))) is not None
    assert predict_rule(Leaf(copy=top_right), cell_features(grid, (2, 3))) is None


def test_a_cell_next_to_a_coloured_cell_is_asked_about():
    # "Every empty cell with a coloured cell directly to its right becomes 8."
    def rule(grid):
        out = grid.copy()
        beside = np.zeros_like(grid, bool)
        beside[:, :-1] = grid[:, 1:] > 0
        out[(grid == 0) & beside] = 8
        return out
    rng = np.random.default_rng(4)
    inputs = [np.where(rng.random((6, 6)) < 0.4, rng.integers(1, 4, (6, 6)), 0).astype(np.uint8)
              for _ in range(3)]
    fit = learn_rule(features([(g, g.shape) for g in inputs]), [rule(g) for g in inputs])
    assert fit is not None and fit.leave_one_out == 1.0
    test = np.where(rng.random((7, 5)) < 0.4, rng.integers(1, 4, (7, 5)), 0).astype(np.uint8)
    np.testing.assert_array_equal(predict_rule(fit.tree, cell_features(test, test.shape)), rule(test))


def test_filling_holes_is_one_question_about_the_input_grid():
    rng = np.random.default_rng(5)
    inputs = [outlines(rng, (9, 9), 2) for _ in range(3)]
    outputs = [fill_holes(g) for g in inputs]
    assert any((o == 4).any() for o in outputs)
    fit = learn_rule([with_input_questions(g, g.shape) for g in inputs], outputs)
    # enclosed? (the first input question, after the cell features) -> 4, else the input's colour
    assert fit is not None and fit.depth == 1 and isinstance(fit.tree, Node)
    assert fit.tree.question == CHANNELS and fit.tree.yes == Leaf(colour=4)
    test = outlines(rng, (12, 10), 3)
    np.testing.assert_array_equal(predict_rule(fit.tree, with_input_questions(test, test.shape)), fill_holes(test))
    # the network's cell features alone need a deeper tree for the same task, or none
    plain = fit_rule(features([(g, g.shape) for g in inputs]), outputs)
    assert plain is None or plain != fit.tree


def test_outlining_objects_asks_which_colours_are_next_to_a_cell():
    # "Every empty cell touching a 3, diagonals included, becomes 8."
    def rule(grid):
        padded = np.pad(grid == 3, 1)
        near = sum(padded[1 + dy:1 + dy + grid.shape[0], 1 + dx:1 + dx + grid.shape[1]]
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
        return np.where((grid == 0) & (near > 0), 8, grid).astype(np.uint8)
    rng = np.random.default_rng(6)
    def scattered(shape):
        return np.where(rng.random(shape) < 0.12, rng.choice([1, 3], size=shape), 0).astype(np.uint8)
    inputs = [scattered((8, 8)) for _ in range(3)]
    fit = learn_rule([with_input_questions(g, g.shape) for g in inputs], [rule(g) for g in inputs])
    assert fit is not None and fit.depth <= 2
    test = scattered((10, 7))
    np.testing.assert_array_equal(predict_rule(fit.tree, with_input_questions(test, test.shape)), rule(test))


def test_input_questions_are_all_no_where_the_output_has_another_shape():
    grid = np.array([[0, 0, 0, 0, 0, 0], [0, 2, 2, 2, 0, 0], [0, 2, 0, 2, 0, 0], [0, 2, 2, 2, 0, 0]], np.uint8)
    same = input_questions(grid, grid.shape)
    assert same.shape == (INPUT_QUESTIONS, 4, 6) and same[0, 2, 2] == 1 and same[0].sum() == 1   # the hole
    assert same[2, 1:, 1:4].all() and same[2].sum() == 9             # inside the coloured cells' box
    other = input_questions(grid, (6, 4))
    assert other.shape == (INPUT_QUESTIONS, 6, 4) and not other.any()


def test_a_colour_table_is_a_leaf_only_where_no_plain_tree_explains_the_task():
    # Eight colours swapped in pairs: too many for a tree of "is it colour c?" questions.
    table = np.array([0, 5, 6, 4, 3, 1, 2, 7, 9, 8])
    rng = np.random.default_rng(7)
    inputs = [rng.choice([1, 2, 3, 4, 5, 6, 8, 9], size=(3, 3)).astype(np.uint8) for _ in range(4)]
    fit = learn_rule(features([(g, g.shape) for g in inputs]), [table[g] for g in inputs])
    top_left = [name for name, _ in COPYABLE].index("top_left")
    assert fit.depth == 0 and fit.tree.copy == top_left and fit.tree.recolour[1] == 5
    test = rng.choice([1, 2, 3, 4, 5, 6, 8, 9], size=(4, 5)).astype(np.uint8)
    np.testing.assert_array_equal(predict_rule(fit.tree, cell_features(test, test.shape)), table[test])
    # a colour the demonstrations never showed has no entry: the rule does not apply
    assert predict_rule(fit.tree, cell_features(np.full((2, 2), 7, np.uint8), (2, 2))) is None
    # where a plain tree exists (the three-colour map above), no table is used
    mapping = np.array([0, 5, 6, 4])
    small = [random_grid(rng, (3, 5)) for _ in range(4)]
    plain = fit_rule(features([(g, g.shape) for g in small]), [mapping[g] for g in small])
    assert all(leaf.recolour is None for leaf in leaves(plain))


def leaves(tree):
    return [tree] if isinstance(tree, Leaf) else leaves(tree.yes) + leaves(tree.no)


def legend_task(rng, shape):
    """A legend of colours down the left column; grey (5) cells to its right take the
    legend's colour of their row (the answer, computed apart)."""
    grid = np.zeros(shape, np.uint8)
    grid[:, 0] = rng.choice([1, 2, 3, 4, 6, 7, 8, 9], size=shape[0])
    grid[:, 2:][rng.random((shape[0], shape[1] - 2)) < 0.4] = 5
    out = grid.copy()
    rows, cols = np.nonzero(grid == 5)
    out[rows, cols] = grid[rows, 0]
    return grid, out


def test_a_legend_at_the_edge_of_each_row_is_a_colour_a_leaf_copies():
    rng = np.random.default_rng(3)
    pairs = [legend_task(rng, (8, 7)) for _ in range(3)]
    fit = learn_rule([with_input_questions(g, g.shape) for g, _ in pairs], [o for _, o in pairs])
    assert fit is not None and fit.depth == 1 and fit.leave_one_out == 1.0
    # "is the cell 0? then 0, else the colour at the left of its row" (a legend cell is its own edge)
    assert [COPYABLE[leaf.copy][0] for leaf in leaves(fit.tree) if leaf.copy is not None] == ["row_left_edge"]
    test, expected = legend_task(rng, (10, 9))
    np.testing.assert_array_equal(predict_rule(fit.tree, with_input_questions(test, test.shape)), expected)


def checkered_upscale(grid):
    """Each coloured cell becomes a 2x2 checkerboard of 1 and 2, each 0 a 2x2 of 0s."""
    out = np.zeros((grid.shape[0] * 2, grid.shape[1] * 2), np.uint8)
    r, c = np.indices(out.shape)
    coloured = np.kron(grid > 0, np.ones((2, 2), bool))
    out[coloured] = np.where((r % 2 == c % 2), 1, 2)[coloured]
    return out


def test_a_checkerboard_is_one_question():
    rng = np.random.default_rng(5)
    inputs = [(rng.random((3, 3)) < 0.5).astype(np.uint8) * 5 for _ in range(3)]
    outputs = [checkered_upscale(g) for g in inputs]
    fit = learn_rule(features([(g, o.shape) for g, o in zip(inputs, outputs)]), outputs)
    assert fit is not None and fit.depth == 2 and fit.leave_one_out == 1.0
    test = (rng.random((4, 5)) < 0.5).astype(np.uint8) * 5
    np.testing.assert_array_equal(predict_rule(fit.tree, cell_features(test, (8, 10))), checkered_upscale(test))


def flood_from_blue(grid):
    """Each region of 0s that borders a blue (1) cell turns blue (the answer, computed apart)."""
    out = grid.copy()
    seen = np.zeros(grid.shape, bool)
    for start in zip(*np.nonzero(grid == 0)):
        if seen[start]:
            continue
        region, frontier, touches_blue = [], [start], False
        seen[start] = True
        while frontier:
            r, c = frontier.pop()
            region.append((r, c))
            for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= nr < grid.shape[0] and 0 <= nc < grid.shape[1]:
                    touches_blue |= grid[nr, nc] == 1
                    if grid[nr, nc] == 0 and not seen[nr, nc]:
                        seen[nr, nc] = True
                        frontier.append((nr, nc))
        if touches_blue:
            out[tuple(np.array(region).T)] = 1
    return out


def test_a_region_that_borders_a_colour_is_one_question():
    rng = np.random.default_rng(11)
    inputs = [rng.choice([0, 0, 0, 3, 3, 1], size=(8, 8)).astype(np.uint8) for _ in range(3)]
    fit = learn_rule([with_input_questions(g, g.shape) for g in inputs], [flood_from_blue(g) for g in inputs])
    assert fit is not None and fit.depth <= 2 and fit.leave_one_out == 1.0
    test = rng.choice([0, 0, 0, 3, 3, 1], size=(10, 9)).astype(np.uint8)
    np.testing.assert_array_equal(predict_rule(fit.tree, with_input_questions(test, test.shape)), flood_from_blue(test))


def test_diagonal_neighbours_are_told_apart_from_the_others():
    grid = np.zeros((5, 5), np.uint8)
    grid[2, 2] = 2
    channels = input_questions(grid, grid.shape)
    any_side, diagonal = channels[12 + 2], channels[22 + 2]   # "next to red": any of 8, diagonal only
    assert any_side.sum() == 8 and diagonal.sum() == 4 and diagonal[1, 1] and not diagonal[1, 2]


def scattered_objects(rng, shape, sizes=(1, 2, 3, 3, 4, 4, 5), colour=2):
    """Bars and L shapes of the given sizes (cells) in one colour on colour 0, apart."""
    grid = np.zeros(shape, np.uint8)
    for size in sizes:
        for _ in range(200):
            r, c = rng.integers(1, shape[0] - 2), rng.integers(1, shape[1] - 4)
            if not grid[r - 1:r + 3, c - 1:c + 4].any():
                cells = [(r, c + k) for k in range(min(size, 3))] + [(r + 1, c + k) for k in range(size - 3)]
                for y, x in cells:
                    grid[y, x] = colour
                break
    return grid


def _object_sizes(grid):
    from engine.grid_features import _components
    labels = _components(grid)
    return np.bincount(labels.ravel())[1:]


def recolour_large_objects(grid):
    """Red objects of 4 cells or more turn magenta (the answer, by flood fill from each cell)."""
    from engine.grid_features import _components
    labels = _components(grid)
    sizes = np.bincount(labels.ravel())
    out = grid.copy()
    out[(labels > 0) & (sizes[labels] >= 4)] = 6
    return out


def test_objects_of_at_least_four_cells_are_one_question():
    rng = np.random.default_rng(21)
    inputs = [scattered_objects(rng, (13, 14)) for _ in range(3)]
    for grid in inputs:      # both sides of the threshold are shown: 3 cells stay, 4 change
        assert sorted(_object_sizes(grid).tolist()) == [1, 2, 3, 3, 4, 4, 5]
    fit = learn_rule([with_input_questions(g, g.shape) for g in inputs], [recolour_large_objects(g) for g in inputs])
    assert fit is not None and fit.depth == 1 and fit.leave_one_out == 1.0
    test = scattered_objects(rng, (14, 15), sizes=(4, 3, 6, 2, 4, 1, 3))
    np.testing.assert_array_equal(predict_rule(fit.tree, with_input_questions(test, test.shape)),
                                  recolour_large_objects(test))


def filled_rectangles(rng, shape, count=2):
    grid = np.zeros(shape, np.uint8)
    for _ in range(count * 20):
        h, w = rng.integers(3, 8, size=2)
        r, c = rng.integers(0, shape[0] - h + 1), rng.integers(0, shape[1] - w + 1)
        if not grid[max(r - 1, 0):r + h + 1, max(c - 1, 0):c + w + 1].any():
            grid[r:r + h, c:c + w] = 1
            count -= 1
        if count == 0:
            break
    return grid


def rings(grid):
    """Each cell of a rectangle takes the colour of its ring: 1 at the edge, 2 inside it, 3
    deeper still (computed apart: the distance to the nearest cell outside, in any direction)."""
    outside = [(r, c) for r in range(-1, grid.shape[0] + 1) for c in range(-1, grid.shape[1] + 1)
               if not (0 <= r < grid.shape[0] and 0 <= c < grid.shape[1]) or grid[r, c] == 0]
    out = grid.copy()
    for r, c in zip(*np.nonzero(grid)):
        out[r, c] = min(3, min(max(abs(r - y), abs(c - x)) for y, x in outside))
    return out


def test_the_rings_of_a_filled_shape_are_questions_about_depth():
    rng = np.random.default_rng(8)
    inputs = [filled_rectangles(rng, (12, 12)) for _ in range(3)]
    fit = learn_rule([with_input_questions(g, g.shape) for g in inputs], [rings(g) for g in inputs])
    assert fit is not None and fit.depth == 2 and fit.leave_one_out == 1.0
    test = filled_rectangles(rng, (14, 13), count=3)
    np.testing.assert_array_equal(predict_rule(fit.tree, with_input_questions(test, test.shape)), rings(test))


def empty_lines_turn_red(grid):
    out = grid.copy()
    out[~grid.any(1)] = 2
    out[:, ~grid.any(0)] = 2
    return out


def test_an_empty_row_or_column_is_one_question():
    rng = np.random.default_rng(4)

    def sparse(shape):
        return (rng.choice([0, 1, 3, 4, 5], size=shape, p=[0.7, 0.075, 0.075, 0.075, 0.075])
                * (rng.random(shape[0]) < 0.6)[:, None] * (rng.random(shape[1]) < 0.6)[None]).astype(np.uint8)

    inputs = [sparse((8, 9)) for _ in range(3)]
    fit = learn_rule([with_input_questions(g, g.shape) for g in inputs], [empty_lines_turn_red(g) for g in inputs])
    assert fit is not None and fit.depth <= 2 and fit.leave_one_out == 1.0
    test = sparse((10, 10))
    np.testing.assert_array_equal(predict_rule(fit.tree, with_input_questions(test, test.shape)),
                                  empty_lines_turn_red(test))


def test_questions_that_split_the_cells_alike_are_tried_once():
    """Target = A xor B: neither A nor B alone explains more than half the cells, while a
    question U that agrees with the target on 12 of 16 cells, asked three times over (as
    many alignments read the same input cell), looks better and leads nowhere. The copies
    of U count as one try, so A is tried next and the tree A, then B, is found."""
    from engine.rule_tree import TRIED, _grow
    cells = np.arange(16)
    a, b = cells % 2 == 1, cells // 2 % 2 == 1
    target = a ^ b
    u = target.copy()
    u[[0, 5, 10, 15]] = ~u[[0, 5, 10, 15]]
    questions = np.stack([u] * TRIED + [a, b], axis=1)
    explained = np.stack([~target, target], axis=1)       # actions: the colours 0 and 1
    colours = np.full((16, 0), -1)
    tree = _grow(questions, explained, colours, target.astype(np.int64), depth=2, recolour=False)
    assert isinstance(tree, Node) and tree.question in (TRIED, TRIED + 1)
    assert _grow(questions[:, :TRIED], explained, colours, target.astype(np.int64), depth=2, recolour=False) is None


def every_third_column_from_the_right(grid):
    """Coloured cells in every third column counted from the right turn 6 (computed apart)."""
    out = grid.copy()
    for column in range(grid.shape[1] - 1, -1, -3):
        out[:, column][grid[:, column] > 0] = 6
    return out


def test_stripes_counted_from_the_far_edge_are_one_question():
    """Grids of different widths: counted from the left, the marked columns differ from
    grid to grid, so only "the column counted from the right is 0 mod 3" explains them."""
    rng = np.random.default_rng(3)
    inputs = [random_grid(rng, (5, width), colours=3) * 2 for width in (7, 8, 9)]
    fit = learn_rule([with_input_questions(g, g.shape) for g in inputs],
                     [every_third_column_from_the_right(g) for g in inputs])
    assert fit is not None and fit.depth <= 2 and fit.leave_one_out == 1.0
    test = random_grid(rng, (6, 11), colours=3) * 2
    np.testing.assert_array_equal(predict_rule(fit.tree, with_input_questions(test, test.shape)),
                                  every_third_column_from_the_right(test))


def hollow_and_solid_shapes(rng, shape, count=4):
    """Blue rectangles, apart from each other, half of them hollow; and the answer, from
    how they were drawn: the hollow ones turn azure (8)."""
    grid, answer = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    kinds = [True, False] * (count // 2) + [False] * (count % 2)     # hollow or not
    for _ in range(500):
        if not kinds:
            break
        h, w = rng.integers(3, 6, size=2)
        r, c = rng.integers(0, shape[0] - h + 1), rng.integers(0, shape[1] - w + 1)
        if grid[max(r - 1, 0):r + h + 1, max(c - 1, 0):c + w + 1].any():
            continue
        hollow = kinds.pop()
        grid[r:r + h, c:c + w] = 1
        answer[r:r + h, c:c + w] = 8 if hollow else 1
        if hollow:
            grid[r + 1:r + h - 1, c + 1:c + w - 1] = answer[r + 1:r + h - 1, c + 1:c + w - 1] = 0
    return grid, answer


def test_shapes_with_a_hole_are_one_question():
    rng = np.random.default_rng(5)
    pairs = [hollow_and_solid_shapes(rng, (12, 12)) for _ in range(3)]
    fit = learn_rule([with_input_questions(g, g.shape) for g, _ in pairs], [a for _, a in pairs])
    assert fit is not None and fit.depth <= 2 and fit.leave_one_out == 1.0
    test, answer = hollow_and_solid_shapes(rng, (14, 13), count=5)
    assert (answer == 8).any() and (answer == 1).any()      # both kinds in the test
    np.testing.assert_array_equal(predict_rule(fit.tree, with_input_questions(test, test.shape)), answer)
