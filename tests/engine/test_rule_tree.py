"""The rule student: the shallowest decision tree over the cell features that explains
every demonstration cell, checked by leave-one-out, in numpy."""

from __future__ import annotations

import numpy as np

from engine.grid_features import cell_features
from engine.rule_tree import COPYABLE, Leaf, fit_rule, learn_rule, predict_rule


def random_grid(rng, shape, colours=4):
    return rng.integers(0, colours, size=shape).astype(np.uint8)


def features(grids_and_shapes):
    return [cell_features(grid, shape) for grid, shape in grids_and_shapes]


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
