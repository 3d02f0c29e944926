import numpy as np
import pytest

from engine.arc import ArcTask, Pair
from engine.augment import (augment_task, dihedral, inverse_dihedral,
                            random_colour_permutation, undo_prediction, vote)


def grid(rows):
    return np.asarray(rows, dtype=np.uint8)


ASYMMETRIC = grid([[1, 2, 3], [4, 5, 6]])


def test_the_eight_transforms_are_distinct_and_invert():
    images = [dihedral(ASYMMETRIC, k) for k in range(8)]
    assert len({(g.shape, g.tobytes()) for g in images}) == 8
    for k in range(8):
        np.testing.assert_array_equal(inverse_dihedral(dihedral(ASYMMETRIC, k), k), ASYMMETRIC)
    np.testing.assert_array_equal(dihedral(ASYMMETRIC, 1), grid([[3, 6], [2, 5], [1, 4]]))
    np.testing.assert_array_equal(dihedral(ASYMMETRIC, 4), ASYMMETRIC.T)
    with pytest.raises(ValueError):
        dihedral(ASYMMETRIC, 8)


def test_colour_permutation_keeps_black_and_permutes_the_rest():
    rng = np.random.default_rng(0)
    perms = [random_colour_permutation(rng) for _ in range(20)]
    for perm in perms:
        assert perm[0] == 0
        assert sorted(perm[1:].tolist()) == list(range(1, 10))
    assert len({p.tobytes() for p in perms}) > 1


def test_augment_task_transforms_every_grid_and_undo_restores_it():
    task = ArcTask("toy", (Pair(ASYMMETRIC, grid([[0, 1]])),), (Pair(grid([[2], [0]]), None),))
    perm = random_colour_permutation(np.random.default_rng(1))
    augmented = augment_task(task, 5, perm)
    assert augmented.id != task.id
    assert augmented.test[0].output is None
    np.testing.assert_array_equal(augmented.train[0].input, dihedral(perm[ASYMMETRIC], 5))
    assert augmented.train[0].output[augmented.train[0].output != 0].tolist() == [perm[1]]
    for original, changed in ((ASYMMETRIC, augmented.train[0].input),
                              (grid([[0, 1]]), augmented.train[0].output),
                              (grid([[2], [0]]), augmented.test[0].input)):
        np.testing.assert_array_equal(undo_prediction(changed, 5, perm), original)
    assert augment_task(task, 0, np.arange(10)).id == task.id


def test_vote_orders_by_count_then_first_appearance():
    a, b, c = grid([[1]]), grid([[2]]), grid([[1, 1]])
    ranked = vote([c, b, a, b, a, grid([[2]])])
    assert [g.tolist() for g in ranked] == [[[2]], [[1]], [[1, 1]]]
    tie = vote([c, a, a, c, b])
    assert [g.tolist() for g in tie] == [[[1, 1]], [[1]], [[2]]]
    # same cells, different shapes are different grids
    assert len(vote([grid([[1, 1]]), grid([[1], [1]])])) == 2
    assert vote([]) == []
