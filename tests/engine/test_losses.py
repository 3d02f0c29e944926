import pytest
import torch
from torch import nn

from engine.encoding import CANVAS, IGNORE_INDEX, NUM_CLASSES, OUTSIDE
from engine.losses import (LossWeights, combined_loss, distillation,
                           inverse_frequency_weights, masked_adaptive_pool, task_loss)
from engine.student import StudentOutput


def small_target(batch=2):
    target = torch.full((batch, CANVAS, CANVAS), OUTSIDE)
    target[:, :3, :3] = 0
    target[:, 1, 1] = 4
    return target


def test_perfect_logits_give_near_zero_loss_and_uniform_gives_log11():
    target = small_target()
    perfect = nn.functional.one_hot(target, NUM_CLASSES).float() * 50
    uniform = torch.zeros(2, CANVAS, CANVAS, NUM_CLASSES)
    for mode in ("ce", "weighted", "focal"):
        assert task_loss(perfect, target, mode).item() < 1e-6
    assert task_loss(uniform, target).item() == pytest.approx(torch.log(torch.tensor(11.0)).item())


def test_unknown_targets_are_ignored():
    target = small_target()
    logits = torch.randn(2, CANVAS, CANVAS, NUM_CLASSES)
    only_first = task_loss(logits[:1], target[:1])
    target[1] = IGNORE_INDEX
    assert task_loss(logits, target).item() == pytest.approx(only_first.item(), rel=1e-5)
    target[0] = IGNORE_INDEX
    empty = task_loss(logits.requires_grad_(), target)
    assert empty.item() == 0.0
    empty.backward()   # an all-unknown batch must not break the training step


def test_inverse_frequency_weights_favour_rare_classes():
    weights = inverse_frequency_weights(small_target())
    assert weights[4] > weights[0] > weights[OUTSIDE] > 0
    assert weights[1] == 0   # absent from the batch
    assert weights[[0, 4, OUTSIDE]].mean().item() == pytest.approx(1.0)


def test_focal_loss_is_below_plain_ce_for_confident_cells():
    target = small_target()
    logits = nn.functional.one_hot(target, NUM_CLASSES).float() * 2
    assert task_loss(logits, target, "focal") < task_loss(logits, target, "ce")
    with pytest.raises(ValueError, match="focal"):
        task_loss(logits, target, "hinge")


def test_task_loss_decreases_when_optimised():
    torch.manual_seed(0)
    target = small_target()
    logits = torch.zeros(2, CANVAS, CANVAS, NUM_CLASSES, requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=50.0)
    losses = []
    for _ in range(20):
        loss = task_loss(logits, target, "weighted")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_adaptive_pool_averages_real_tokens_into_bins():
    sequence = torch.arange(6, dtype=torch.float32).view(1, 6, 1)
    mask = torch.tensor([[True, True, False, True, True, False]])   # real values 0,1,3,4
    pooled = masked_adaptive_pool(sequence, mask, torch.tensor([2]), 2)
    assert pooled.view(-1).tolist() == [0.5, 3.5]


def test_distillation_is_zero_when_the_projection_maps_onto_the_teacher():
    student = torch.randn(2, 5, 4)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    identity = nn.Identity()
    mse, cosine = distillation(student, mask, student.clone(), mask.clone(), identity)
    assert mse.item() == pytest.approx(0.0, abs=1e-7)
    assert cosine.item() == pytest.approx(0.0, abs=1e-6)
    # padding values must not matter
    noisy = student.clone()
    noisy[1, 3:] = 100.0
    mse_padded, _ = distillation(noisy, mask, student, mask, identity)
    assert mse_padded.item() == pytest.approx(0.0, abs=1e-7)


def test_distillation_pools_sequences_of_different_lengths():
    torch.manual_seed(0)
    student = torch.randn(3, 12, 8, requires_grad=True)
    student_mask = torch.ones(3, 12, dtype=torch.bool)
    student_mask[2, 9:] = False
    teacher = torch.randn(3, 5, 16)
    teacher_mask = torch.tensor([[True] * 5, [True] * 2 + [False] * 3, [True] * 5])
    projection = nn.Linear(8, 16)
    optimizer = torch.optim.Adam([student, *projection.parameters()], lr=0.05)
    first = None
    for _ in range(60):
        mse, cosine = distillation(student, student_mask, teacher, teacher_mask, projection)
        first = first if first is not None else (mse.item(), cosine.item())
        optimizer.zero_grad()
        (mse + cosine).backward()
        optimizer.step()
    assert torch.isfinite(mse) and torch.isfinite(cosine)
    assert mse.item() < 0.5 * first[0] and cosine.item() < 0.5 * first[1]


def test_combined_loss_weights_every_component():
    torch.manual_seed(0)
    target = small_target()
    hidden = torch.randn(2, 6, 8)
    hidden_mask = torch.ones(2, 6, dtype=torch.bool)
    output = StudentOutput(torch.randn(2, CANVAS, CANVAS, NUM_CLASSES), hidden, hidden_mask)
    batch = {"target": target, "teacher_features": torch.randn(2, 4, 16),
             "teacher_mask": torch.ones(2, 4, dtype=torch.bool)}
    weights = LossWeights(task=2.0, mse=0.5, cosine=0.25)
    losses = combined_loss(output, batch, weights, projection=nn.Linear(8, 16))
    assert set(losses) == {"task", "mse", "cosine", "loss"}
    expected = 2.0 * losses["task"] + 0.5 * losses["mse"] + 0.25 * losses["cosine"]
    assert losses["loss"].item() == pytest.approx(expected.item())
    no_teacher = combined_loss(output, {"target": target}, weights)
    assert set(no_teacher) == {"task", "loss"}
    assert no_teacher["loss"].item() == pytest.approx(2.0 * losses["task"].item())


def test_the_grid_loss_is_not_dominated_by_the_empty_canvas():
    """A 3x3 target: 9 real cells, 7 edge cells, 884 far-away outside cells. Predicting
    every real cell wrong must cost the same whatever the far canvas holds."""
    import torch
    from engine.encoding import OUTSIDE, encode_target
    from engine.losses import grid_edge_cells, task_loss
    import numpy as np

    target = torch.from_numpy(encode_target(np.ones((3, 3), np.uint8)))[None]
    real, edge = grid_edge_cells(target)
    assert int(real.sum()) == 9 and int(edge.sum()) == 7
    assert bool(edge[0, 3, 0]) and bool(edge[0, 0, 3]) and not bool(edge[0, 10, 10])
    wrong = torch.zeros(1, 30, 30, 11)
    wrong[..., OUTSIDE] = 5.0                        # everything predicted outside
    canvas = task_loss(wrong, target, region="canvas")
    grid = task_loss(wrong, target, region="grid")
    assert canvas < 0.2 < 1.0 < grid                        # the canvas mean hides 9 wrong cells
    right_inside = wrong.clone()
    right_inside[0, :3, :3, 1] = 10.0
    assert task_loss(right_inside, target, region="grid") < grid / 5


def test_task_loss_parts_split_real_cells_from_the_outside_canvas():
    """A model that gets the outside right and the real cells wrong has a small loss over
    the whole canvas (the outside is most of it) but a large loss over the real cells,
    which the default task loss (region "grid") is not blind to."""
    from engine.losses import task_loss_parts

    target = small_target()
    logits = nn.functional.one_hot(target, NUM_CLASSES).float() * 20
    logits[:, :3, :3] = 0.0                      # real cells: uniform, 1/11 each
    parts = task_loss_parts(logits, target)
    assert parts["task_cells"] == pytest.approx(torch.log(torch.tensor(11.0)).item(), rel=1e-4)
    assert parts["task_outside"] < 1e-6
    assert task_loss(logits, target, region="canvas").item() < 0.03 * parts["task_cells"]  # 9 of 900
    assert task_loss(logits, target).item() > 0.4 * parts["task_cells"]
    unknown = torch.full_like(target, IGNORE_INDEX)
    assert all(v != v for v in task_loss_parts(logits, unknown).values())   # NaN: nothing to measure
