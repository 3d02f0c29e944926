"""The per-task student: features that recolour by a channel permutation, shape rules,
and learning a task from its demonstrations alone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.grid_features import CHANNELS, cell_features, colour_channel_index
from engine.pertask import (IGNORE, PerTaskNet, PerTaskSettings, _random_permutation, _TrainingSet,
                            fixed_colours, rank_candidates, solve_task)
from engine.shapes import infer_shapes


def random_grid(rng, shape, colours=5):
    return rng.integers(0, colours, size=shape).astype(np.uint8)


@pytest.mark.parametrize("output_shape", [(6, 7), (12, 14), (3, 7)])
def test_recolouring_a_grid_permutes_its_feature_channels(output_shape):
    rng = np.random.default_rng(1)
    grid = random_grid(rng, (6, 7), colours=10)
    perm = np.concatenate([[0], rng.permutation(np.arange(1, 10))])
    original = cell_features(grid, output_shape, crop=(1, 2))
    recoloured = cell_features(perm[grid], output_shape, crop=(1, 2))
    assert original.shape == (CHANNELS, *output_shape)
    np.testing.assert_array_equal(recoloured, original[colour_channel_index(perm)])


def test_alignments_read_the_input_where_the_output_cell_sits():
    grid = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    features = cell_features(grid, (4, 4))
    top_left = features[0:10]          # first block: top-left alignment, one-hot colours
    tile = features[5 * 11:5 * 11 + 10]
    assert top_left[:, 0, 0].argmax() == 1 and top_left[:, 1, 1].argmax() == 4
    assert top_left[:, 3, 3].sum() == 0            # beyond the input: reads nothing
    assert tile[:, 3, 3].argmax() == 4 and tile[:, 2, 0].argmax() == 1


def test_shape_rules_from_demonstrations():
    rng = np.random.default_rng(0)
    same = [(g, g) for g in (random_grid(rng, (3, 4)), random_grid(rng, (5, 2)))]
    assert infer_shapes(same).candidates(random_grid(rng, (7, 6)))[0] == (7, 6)
    triple = [(g, np.kron(g, np.ones((3, 3), np.uint8))) for g in (random_grid(rng, (2, 3)), random_grid(rng, (3, 3)))]
    assert infer_shapes(triple).candidates(random_grid(rng, (4, 2)))[0] == (12, 6)
    constant = [(random_grid(rng, (5, 5)), random_grid(rng, (1, 1))), (random_grid(rng, (7, 3)), random_grid(rng, (1, 1)))]
    assert infer_shapes(constant).candidates(random_grid(rng, (9, 9)))[0] == (1, 1)

    def with_box(shape, top, left, height, width, colour=3):
        grid = np.zeros(shape, np.uint8)
        grid[top:top + height, left:left + width] = colour
        return grid, np.full((height, width), colour, np.uint8)
    crop = [with_box((8, 8), 1, 2, 3, 2), with_box((9, 7), 4, 0, 2, 5)]
    model = infer_shapes(crop)
    test, _ = with_box((10, 10), 5, 6, 4, 3)
    assert model.crop is not None and model.candidates(test)[0] == (4, 3)
    assert model.crop_box(test)[:2] == (5, 6)


def test_output_sizes_measured_by_counts_and_frames_are_inferred():
    # "One column per coloured cell": the input's shape does not explain the width.
    def cells_in_a_row(count, shape=(3, 3)):
        grid = np.zeros(shape, np.uint8)
        grid.flat[:count] = 5
        return grid, np.full((1, count), 5, np.uint8)
    model = infer_shapes([cells_in_a_row(2), cells_in_a_row(4), cells_in_a_row(3)])
    assert str(model.width[0]) == "cells"
    assert model.candidates(cells_in_a_row(5)[0])[0] == (1, 5)
    # "Tile the input once per colour": the height is the input's height times its colours.
    def tiled_per_colour(colours):
        grid = np.zeros((3, 3), np.uint8)
        grid[0, :colours] = np.arange(1, colours + 1)
        return grid, np.tile(grid, (colours, colours))
    model = infer_shapes([tiled_per_colour(1), tiled_per_colour(2)])
    assert model.candidates(tiled_per_colour(3)[0])[0] == (9, 9)

    # "Cut out what a frame encloses", the frame's colour changing from pair to pair.
    def framed(shape, top, left, height, width, colour, rng):
        grid = (rng.random(shape) < 0.15).astype(np.uint8) * 7       # scattered cells of colour 7
        grid[top:top + height, left:left + width] = colour
        inside = (rng.random((height - 2, width - 2)) < 0.3).astype(np.uint8) * 7
        grid[top + 1:top + height - 1, left + 1:left + width - 1] = inside
        return grid, inside
    rng = np.random.default_rng(3)
    model = infer_shapes([framed((12, 12), 2, 3, 6, 5, 2, rng), framed((11, 13), 4, 1, 5, 8, 4, rng)])
    test, inside = framed((14, 10), 1, 2, 9, 6, 3, rng)
    assert model.crop == "inside of the largest object"
    assert model.candidates(test)[0] == inside.shape

def test_introduced_colours_keep_their_identity():
    demos = [(np.array([[1, 0]]), np.array([[1, 4]])), (np.array([[2, 0]]), np.array([[2, 4]]))]
    assert fixed_colours(demos) == [0, 4]


def test_votes_rank_by_count_then_confidence():
    a, b = np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8)
    ranked = rank_candidates([(a, -1.0, 1), (b, -0.1, 1), (a, -1.0, 1), (b, -0.2, 1)])
    assert [r[1] for r in ranked] == [2, 2]
    assert np.array_equal(ranked[0][0], b)        # same votes: the more confident first


def recolour_task(rng, n):
    """Every non-zero cell becomes 4: a rule the student must learn from demos alone."""
    pairs = []
    for _ in range(n):
        grid = random_grid(rng, tuple(rng.integers(3, 7, size=2)), colours=4)
        pairs.append((grid, np.where(grid > 0, 4, 0).astype(np.uint8)))
    return pairs


def test_a_fresh_student_learns_a_task_from_its_demonstrations_alone():
    # The networks alone (rule=False): the rule student would answer this task by itself.
    rng = np.random.default_rng(3)
    demos, tests = recolour_task(rng, 3), recolour_task(rng, 2)
    solution = solve_task(demos, [t[0] for t in tests], PerTaskSettings(steps=60, width=32, depth=2, rule=False))
    assert solution.losses[-1] < solution.losses[0] / 4
    assert solution.demo_exact == 1.0
    for (_, expected), attempts in zip(tests, solution.attempts):
        assert len(attempts) == 2 and not np.array_equal(attempts[0], attempts[1])
        assert np.array_equal(attempts[0], expected)


def test_without_training_the_student_does_not_solve_it():
    """The same check can fail: zero steps leave a random network (and no rule student)."""
    rng = np.random.default_rng(3)
    demos, tests = recolour_task(rng, 3), recolour_task(rng, 2)
    solution = solve_task(demos, [t[0] for t in tests], PerTaskSettings(steps=0, width=32, depth=2, rule=False))
    assert not all(np.array_equal(a[0], e) for (_, e), a in zip(tests, solution.attempts))


def test_a_rule_with_a_direction_is_answered_in_the_original_frame():
    """Mirroring left to right is not symmetric under the 8 transforms: told which view it
    sees, and with a second model trained without transforms in the ensemble, the
    student still answers in the original frame."""
    rng = np.random.default_rng(5)
    demos = [(g, g[:, ::-1].copy()) for g in (random_grid(rng, (4, 5)) for _ in range(4))]
    test = random_grid(rng, (5, 4))
    solution = solve_task(demos, [test], PerTaskSettings(steps=240, width=32, depth=2, models=2, rule=False))
    assert any(np.array_equal(attempt, test[:, ::-1]) for attempt in solution.attempts[0])


def test_the_rule_student_answers_first_where_it_explains_every_demonstration():
    """Untrained networks (0 steps) cannot answer "rotate left"; the rule student can, and
    its grid comes first, the networks' first different grid second."""
    rng = np.random.default_rng(8)
    demos = [(g, np.rot90(g).copy()) for g in (random_grid(rng, (4, 4)) for _ in range(3))]
    test = random_grid(rng, (4, 4))
    untrained = PerTaskSettings(steps=0, width=16, depth=1)
    ruled = solve_task(demos, [test], untrained)
    assert ruled.rule_answered and "0 questions deep" in ruled.rule
    np.testing.assert_array_equal(ruled.attempts[0][0], np.rot90(test))
    assert not np.array_equal(ruled.attempts[0][1], ruled.attempts[0][0])
    alone = solve_task(demos, [test], replace(untrained, rule=False))
    assert not alone.rule_answered and alone.rule == ""
    assert not any(np.array_equal(a, np.rot90(test)) for a in alone.attempts[0])
    noise = [(g, random_grid(rng, (4, 4), colours=10)) for g, _ in demos]
    assert not solve_task(noise, [test], untrained).rule_answered


def test_pretraining_across_tasks_resumes_exactly_and_seeds_test_time_training(workspace):
    """`student=pertask` is an ordinary training run: stopped and resumed it logs the
    same losses as one never stopped, and its checkpoint starts each task's adaptation."""
    from db.store import Store
    from engine.runner import run_job
    from engine.train import train_job

    config = {"student": "pertask", "preset": "tiny", "max_tasks": 3, "max_grid": 6, "batch_size": 4,
              "max_steps": 6, "val_tasks": 1, "val_every_steps": 3, "checkpoint_every_steps": 3,
              "augment": True}
    with Store.open(workspace) as store:
        whole = store.create_run("whole", "train", config)
        halves = store.create_run("halves", "train", {**config, "max_steps": 3})
    assert run_job(workspace, whole.id, train_job) == 0
    assert run_job(workspace, halves.id, train_job) == 0
    with Store.open(workspace) as store:   # as a stop at step 3 would leave it
        store.update_run(halves.id, config={**config, "max_steps": 6}, status="stopped")
    from functools import partial
    assert run_job(workspace, halves.id, partial(train_job, resume=True), resumed=True) == 0
    with Store.open_readonly(workspace) as store:
        assert store.read_metrics_after(whole.id, "loss").values == store.read_metrics_after(halves.id, "loss").values
        assert store.read_metrics_after(whole.id, "val_pass2").steps == [3, 6]
        checkpoint = store.checkpoints(whole.id)[-1]

    with Store.open(workspace) as store:
        run = store.create_run("ttt", "eval", {"dataset": "arc1/eval", "max_tasks": 1, "max_grid": 6,
                                               "ttt_steps": 3, "workers": 1,
                                               "checkpoint_id": checkpoint.id, "source_run_id": whole.id})
    from engine.evaluate import eval_job
    assert run_job(workspace, run.id, eval_job) == 0
    with Store.open_readonly(workspace) as store:
        evaluation = store.get_evaluation(store.evaluation_of_run(run.id))
    assert evaluation.n_tasks == 1 and evaluation.checkpoint_id == checkpoint.id
    assert "pretrained per-task student" in evaluation.summary["test_time_training"]


def test_the_colour_head_judges_every_colour_alike():
    """Recolouring the input recolours the colour head's scores the same way (its
    per-colour identity vectors set apart, which only matter for colours that mean
    themselves): one rule, learned once, holds for every colour."""
    import torch
    from engine.grid_features import cell_features, colour_channel_index
    from engine.pertask import ColourHead

    torch.manual_seed(0)
    head = ColourHead(width=8, hidden=16)
    torch.nn.init.normal_(head.out.weight)
    grid = np.random.default_rng(1).integers(0, 10, size=(5, 4)).astype(np.uint8)
    perm = np.array([0, 3, 1, 2, 9, 8, 7, 6, 5, 4])
    features = torch.from_numpy(cell_features(grid, grid.shape))[None]
    recoloured = features[:, torch.from_numpy(colour_channel_index(perm))]   # the features of perm[grid]
    trunk = torch.randn(1, 8, 5, 4)
    scores, recoloured_scores = head(features, trunk), head(recoloured, trunk)
    assert torch.allclose(recoloured_scores[:, perm], scores, atol=1e-5)
    assert not torch.allclose(recoloured_scores, scores, atol=1e-3)   # it does depend on colour


def test_cells_that_change_weigh_more_in_the_loss():
    torch = pytest.importorskip("torch")
    from engine.pertask import cell_loss

    grid = np.zeros((4, 4), np.uint8)
    grid[1, 1] = 3
    expected = grid.copy()
    expected[2, 2] = 5                                   # the one cell the task changes
    features = torch.from_numpy(cell_features(grid, expected.shape))[None]
    targets = torch.from_numpy(expected.astype(np.int64))[None]
    logits = torch.zeros((1, 10, 4, 4))                  # uniform: every cell costs log(10)
    logits[0, expected.astype(np.int64), *np.indices((4, 4))] = 5.0   # ...but these are right
    logits[0, 5, 2, 2] = 0.0                                          # except the changed cell
    plain, weighted = cell_loss(logits, features, targets, 1.0), cell_loss(logits, features, targets, 4.0)
    per_cell = torch.nn.functional.cross_entropy(logits, targets, reduction="none")[0]
    copied = per_cell.sum() - per_cell[2, 2]
    assert torch.isclose(plain, per_cell.mean())
    assert torch.isclose(weighted, (copied + 4 * per_cell[2, 2]) / 16)


def test_a_stop_request_ends_the_task_without_answering_it():
    """A stopping evaluation keeps no answer for the task in hand: no prediction, not the
    rule student's (which would answer this task at once), and only the steps already taken."""
    rng = np.random.default_rng(8)
    demos = [(g, np.rot90(g).copy()) for g in (random_grid(rng, (4, 4)) for _ in range(3))]
    test = random_grid(rng, (4, 4))
    asked = iter([False] * 5 + [True] * 1000)
    stopped = solve_task(demos, [test], PerTaskSettings(steps=50, width=16, depth=1, models=3),
                         should_stop=lambda: next(asked))
    assert stopped.attempts == [] and stopped.rule == "" and not stopped.rule_answered
    assert stopped.steps == 5
    assert solve_task(demos, [test], PerTaskSettings(steps=5, width=16, depth=1)).rule_answered


def test_a_confident_rule_leaves_the_second_attempt_to_one_short_network_model():
    """Where the rule predicts every demonstration from the others, its grid is attempt 1
    and one model of the ensemble, with a third of its share of the steps, gives attempt 2."""
    rng = np.random.default_rng(8)
    demos = [(g, np.rot90(g).copy()) for g in (random_grid(rng, (4, 4)) for _ in range(3))]
    test = random_grid(rng, (4, 4))
    three_models = PerTaskSettings(steps=90, width=16, depth=1, models=3)
    confident = solve_task(demos, [test], three_models)
    assert confident.rule_answered and "leave-one-out 100%" in confident.rule
    assert confident.steps == 10 and "one network model of 10 steps" in confident.rule
    np.testing.assert_array_equal(confident.attempts[0][0], np.rot90(test))
    assert not np.array_equal(confident.attempts[0][1], confident.attempts[0][0])
    assert solve_task(demos, [test], replace(three_models, confident_rule_share=1.0)).steps == 30
    assert solve_task(demos, [test], replace(three_models, confident_rule_share=None)).steps == 90
    # One demonstration: the tree fitted without it predicts nothing, so the rule is not
    # confident and the whole ensemble trains.
    unsure = solve_task(demos[:1], [test], three_models)
    assert unsure.rule_answered and "leave-one-out 0%" in unsure.rule and unsure.steps == 90


def test_a_grid_without_padding_needs_no_mask():
    """Skipping the mask where every cell is real changes nothing, in fp32 and under bf16."""
    torch.manual_seed(0)
    net = PerTaskNet(width=16, depth=2, colour_head=8)
    features = torch.rand(3, CHANNELS, 5, 6)
    every_cell = torch.ones(3, 5, 6, dtype=torch.bool)
    assert torch.equal(net(features), net(features, every_cell))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(net(features.bfloat16()), net(features.bfloat16(), every_cell))
    some_cells = every_cell.clone()
    some_cells[:, 4:] = False
    assert not torch.equal(net(features)[:, :, :4], net(features, some_cells)[:, :, :4])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_training_batches_recolour_features_and_targets_alike(dtype):
    """Each sample of a batch is one demonstration in one view, its features recoloured by
    one colour permutation and its expected output by the same one; demonstrations of
    different shapes are padded and masked."""
    rng = np.random.default_rng(4)
    demos = [(g, np.where(g == 1, 2, g).astype(np.uint8))
             for g in (random_grid(rng, (3, 4)), random_grid(rng, (5, 5)))]
    shapes, fixed = infer_shapes(demos), fixed_colours(demos)
    data = _TrainingSet(demos, shapes, [0, 1, 4], torch.device("cpu"), dtype)
    assert data.padded and data.features.dtype == dtype
    features, targets = data.batch(np.random.default_rng(9), 12, fixed, permute=True)
    replay = np.random.default_rng(9)   # the same draws, in the same order
    index = replay.integers(data.size, size=12)
    perms = [_random_permutation(replay, fixed) for _ in range(12)]
    assert len({tuple(p) for p in perms}) > 1
    for sample, (i, perm) in enumerate(zip(index, perms)):
        stored = data.features[i][torch.from_numpy(colour_channel_index(perm))]
        assert torch.equal(features[sample], stored)
        expected = data.targets[i]
        real = expected != IGNORE
        assert torch.equal(targets[sample][real], torch.from_numpy(perm)[expected[real]])
        assert (targets[sample][~real] == IGNORE).all()
