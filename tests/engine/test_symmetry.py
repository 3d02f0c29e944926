"""Repairing a grid from its own symmetries (engine/symmetry.py), and the rule student
copying that repair."""

import numpy as np

from engine.grid_features import cell_features
from engine.rule_tree import COPYABLE, YES_NO_QUESTIONS, Leaf, input_questions, learn_rule, predict_rule
from engine.symmetry import repaired


def periodic(rng, shape, period, colours=(1, 2, 3, 4)):
    tile = rng.choice(colours, size=period)
    reps = (-(-shape[0] // period[0]), -(-shape[1] // period[1]))
    return np.tile(tile, reps)[:shape[0], :shape[1]]


def masked(grid, box, colour=0):
    out = grid.copy()
    (r0, r1), (c0, c1) = box
    out[r0:r1, c0:c1] = colour
    return out


def test_a_periodic_grid_is_restored_under_its_mask():
    rng = np.random.default_rng(0)
    picture = periodic(rng, (12, 14), (3, 4))
    np.testing.assert_array_equal(repaired(masked(picture, ((2, 5), (6, 10)))), picture)


def test_a_mirrored_picture_with_an_axis_off_centre_is_restored():
    """Symmetric about the column axis between 8 and 9 (not the grid's centre), the mask
    in the right half; cells whose mirror falls outside the grid stay as they are."""
    rng = np.random.default_rng(1)
    left = rng.choice([1, 2, 3, 5, 6], size=(10, 9))
    picture = np.concatenate([left, left[:, ::-1]], axis=1)[:, :15]   # 18 wide, cut to 15
    broken = masked(picture, ((3, 7), (10, 13)), colour=0)
    np.testing.assert_array_equal(repaired(broken), picture)


def test_a_picture_symmetric_about_its_diagonal_is_restored():
    rng = np.random.default_rng(2)
    upper = rng.choice([1, 4, 7], size=(9, 9))
    picture = np.triu(upper) + np.triu(upper, 1).T
    broken = masked(picture, ((1, 3), (5, 8)), colour=9)
    np.testing.assert_array_equal(repaired(broken), picture)


def test_a_grid_without_symmetry_is_left_as_it_is():
    rng = np.random.default_rng(3)
    grid = rng.integers(0, 10, size=(8, 9))
    np.testing.assert_array_equal(repaired(grid), grid)


def test_the_rule_student_copies_the_repaired_input():
    """Demonstrations that restore a masked periodic picture: one leaf that copies the
    repaired input explains them, and answers a new picture with another mask."""
    rng = np.random.default_rng(4)
    pictures = [periodic(rng, (10, 10), period) for period in ((2, 3), (3, 3), (4, 2), (3, 5))]
    boxes = [((1, 4), (2, 5)), ((5, 8), (1, 3)), ((0, 2), (6, 9)), ((6, 9), (6, 9))]
    inputs = [masked(p, b) for p, b in zip(pictures, boxes)]

    def features(grid):
        return np.concatenate([cell_features(grid, grid.shape), input_questions(grid, grid.shape)])

    fit = learn_rule([features(g) for g in inputs[:3]], pictures[:3])
    assert fit is not None and fit.leave_one_out == 1.0
    assert fit.tree == Leaf(copy=[name for name, _ in COPYABLE].index("repaired"))
    np.testing.assert_array_equal(predict_rule(fit.tree, features(inputs[3])), pictures[3])


def test_an_output_cut_from_the_input_reads_the_repaired_input_at_the_cut():
    """Where the output is the painted-over patch (cut from the input at its corner), the
    repaired colours are read there; the yes/no questions, which need an input cell of
    the output's own, are all no."""
    rng = np.random.default_rng(5)
    upper = rng.choice([1, 4, 7], size=(12, 12))
    picture = np.triu(upper) + np.triu(upper, 1).T
    broken = masked(picture, ((2, 5), (5, 9)), colour=3)
    channels = input_questions(broken, (3, 4), crop=(2, 5))
    repaired_colours = slice(YES_NO_QUESTIONS, YES_NO_QUESTIONS + 10)
    restored = channels[repaired_colours].argmax(0)
    np.testing.assert_array_equal(restored, picture[2:5, 5:9])
    assert channels[YES_NO_QUESTIONS + 10].all()                   # it names a colour everywhere
    assert not channels[:YES_NO_QUESTIONS].any() and not channels[YES_NO_QUESTIONS + 11:].any()   # nor the edges
    assert not input_questions(broken, (3, 4)).any()       # another shape, no cut: nothing
