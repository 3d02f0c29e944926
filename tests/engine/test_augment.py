import numpy as np
import pytest

from engine.arc import ArcTask, Pair
from engine.augment import (augment_task, dihedral, inverse_dihedral, original_task_id,
                            random_colour_permutation, random_translation, translate_task,
                            translation_room, undo_prediction, untranslate, vote)


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


def _every_grid(task):
    return [g for p in task.train + task.test for g in (p.input, p.output) if g is not None]


def test_a_translated_task_keeps_every_pair_and_stays_within_30x30():
    rng = np.random.default_rng(3)
    task = ArcTask("toy", (Pair(rng.integers(0, 10, (7, 4)).astype(np.uint8), grid([[5, 6]])),
                           Pair(grid([[1]]), rng.integers(0, 10, (3, 12)).astype(np.uint8))),
                   (Pair(grid([[2], [0]]), None),))
    assert translation_room(task) == (23, 18)
    shifted = translate_task(task, 23, 5)
    assert shifted.id != task.id and original_task_id(shifted.id) == "toy"
    assert shifted.test[0].output is None
    for before, after in zip(_every_grid(task), _every_grid(shifted)):
        assert after.shape == (before.shape[0] + 23, before.shape[1] + 5)
        assert max(after.shape) <= 30
        np.testing.assert_array_equal(untranslate(after, 23, 5), before)
        assert not after[:23].any() and not after[:, :5].any()   # padded with colour 0
    with pytest.raises(ValueError, match="30x30"):
        translate_task(task, 24, 0)
    assert translate_task(task, 0, 0) is task


def test_random_translations_fit_are_drawn_from_the_seed_and_vary():
    task = ArcTask("toy", (Pair(grid([[1, 2, 3]] * 20), grid([[4]])),), (Pair(grid([[5]]), None),))

    def draws(seed):
        rng = np.random.default_rng(seed)
        return [random_translation(task, "test", 8, rng) for _ in range(30)]

    first, again = draws(0), draws(0)
    assert [t.id for t in first] == [t.id for t in again]
    assert len({t.id for t in first}) > 5
    for shifted in first:
        assert all(max(g.shape) <= 30 for g in _every_grid(shifted))
        dy = shifted.train[0].input.shape[0] - 20
        dx = shifted.train[0].input.shape[1] - 3
        assert 0 <= dy <= 8 and 0 <= dx <= 8
        np.testing.assert_array_equal(untranslate(shifted.test[0].input, dy, dx), grid([[5]]))
    # No room left (a 30-wide grid): no shift that way, ever.
    wide = ArcTask("wide", (Pair(np.ones((2, 30), np.uint8), grid([[1]])),), ())
    assert all(random_translation(wide, "test", 8, np.random.default_rng(s)).train[0].input.shape[1] == 30
               for s in range(10))


def test_a_demonstration_query_is_translated_without_its_tasks_test_pairs():
    """A demonstration query reads no test pair: an evaluation task's test output (kind
    "train" queries with eval_demos) must not change the shifts drawn."""
    demos = (Pair(grid([[1, 2]]), grid([[2, 1]])), Pair(grid([[3]]), grid([[3]])))
    small = ArcTask("t", demos, (Pair(grid([[1]]), grid([[1]])),))
    huge = ArcTask("t", demos, (Pair(grid([[1]]), np.zeros((30, 30), np.uint8)),))
    for seed in range(5):
        a = random_translation(small, "train", 10, np.random.default_rng(seed))
        b = random_translation(huge, "train", 10, np.random.default_rng(seed))
        assert a.id == b.id and a.test == b.test == ()
