"""Training losses: the task loss on the 30x30x11 canvas and feature distillation.

By default the task loss covers the expected grid's real cells and the cells marking
where it ends (predicting the shape is part of the answer), each group averaged on its
own, so the empty canvas around a small grid cannot dominate it. Unknown targets
(IGNORE_INDEX everywhere) contribute nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.encoding import IGNORE_INDEX, NUM_CLASSES, OUTSIDE
from engine.student import StudentOutput

TASK_LOSS_MODES = ("ce", "weighted", "focal")


def inverse_frequency_weights(target: torch.Tensor) -> torch.Tensor:
    """Class weights [11] proportional to 1 / frequency among the known target cells,
    scaled so the classes present average 1; absent classes get 0."""
    known = target[target != IGNORE_INDEX]
    counts = torch.bincount(known, minlength=NUM_CLASSES).float()
    present = counts > 0
    weights = torch.zeros(NUM_CLASSES, device=target.device)
    weights[present] = 1.0 / counts[present]
    return weights * present.sum() / weights.sum().clamp(min=1e-12)


TASK_LOSS_REGIONS = ("grid", "canvas")


def grid_edge_cells(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(real, edge) masks [B, 30, 30] of an encoded target: the expected grid's cells, and
    the OUTSIDE cells that mark where it ends (the row just below it and the column just
    right of it, which is what decoding reads the shape from)."""
    known = target != IGNORE_INDEX
    real = known & (target != OUTSIDE)
    height = real[:, :, 0].sum(1).view(-1, 1, 1)
    width = real[:, 0, :].sum(1).view(-1, 1, 1)
    rows = torch.arange(target.shape[1], device=target.device).view(1, -1, 1)
    cols = torch.arange(target.shape[2], device=target.device).view(1, 1, -1)
    edge = known & ~real & (((rows == height) & (cols <= width)) | ((cols == width) & (rows <= height)))
    return real, edge


def task_loss(logits: torch.Tensor, target: torch.Tensor, mode: str = "ce",
              gamma: float = 2.0, class_weights: torch.Tensor | None = None,
              region: str = "grid") -> torch.Tensor:
    """Task loss of logits [B, 30, 30, 11] against target [B, 30, 30].

    "ce": cross-entropy; "weighted": cross-entropy with ``class_weights``, or
    inverse-frequency weights from this batch if none are given; "focal":
    (1 - p)^gamma * cross-entropy, optionally class-weighted.
    ``region`` "grid" (the default) averages, per example, the mean over the expected
    grid's real cells and the mean over the cells marking its edge, then over examples, so the ~95% of the canvas that lies
    outside a small grid cannot dominate; "canvas" is the mean over every known cell.
    """
    if mode not in TASK_LOSS_MODES:
        raise ValueError(f"unknown task loss {mode!r}: use one of {', '.join(TASK_LOSS_MODES)}")
    if region not in TASK_LOSS_REGIONS:
        raise ValueError(f"unknown task loss region {region!r}: use one of {', '.join(TASK_LOSS_REGIONS)}")
    flat_logits = logits.reshape(-1, NUM_CLASSES).float()
    flat_target = target.reshape(-1)
    known = flat_target != IGNORE_INDEX
    if not known.any():
        return flat_logits.sum() * 0.0   # keeps the graph, so backward() still works
    if mode == "weighted" and class_weights is None:
        class_weights = inverse_frequency_weights(flat_target[known])
    cell_losses = F.cross_entropy(flat_logits, flat_target.clamp(min=0), reduction="none")
    if mode == "focal":
        p_correct = torch.exp(-cell_losses)
        cell_losses = (1.0 - p_correct) ** gamma * cell_losses
    cell_weights = torch.ones_like(cell_losses) if class_weights is None else \
        class_weights.to(flat_logits.device)[flat_target.clamp(min=0)]

    def mean_over(mask: torch.Tensor) -> torch.Tensor:
        weights = cell_weights * mask
        return (cell_losses * weights).sum() / weights.sum().clamp(min=1e-12)

    if region == "canvas":
        return mean_over(known)
    # Per example, so each grid weighs the same whatever its size, and a batch split
    # across processes (DDP) averages to the same loss as the whole batch.
    batch = target.shape[0]
    real, edge = (m.reshape(batch, -1).float() for m in grid_edge_cells(target))
    losses, weights = (cell_losses * cell_weights).view(batch, -1), cell_weights.view(batch, -1)

    def per_example(mask: torch.Tensor) -> torch.Tensor:
        return (losses * mask).sum(1) / (weights * mask).sum(1).clamp(min=1e-12)

    has_edge = edge.sum(1) > 0
    example = torch.where(has_edge, (per_example(real) + per_example(edge)) / 2, per_example(real))
    scored = real.sum(1) > 0    # examples whose target is known
    return example[scored].mean() if scored.any() else flat_logits.sum() * 0.0


@torch.no_grad()
def task_loss_parts(logits: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Diagnostics, not optimised: the plain cross-entropy over the expected grids' real
    cells ("task_cells") and over the canvas outside them ("task_outside"), each a mean
    over its cells in the batch. The outside cells are most of a small task's canvas, so
    a low ``loss_task`` can hide wrong real cells; these two show it. NaN where a batch
    has no such cells."""
    flat_logits = logits.reshape(-1, NUM_CLASSES).float()
    flat_target = target.reshape(-1)
    known = flat_target != IGNORE_INDEX
    cell_losses = F.cross_entropy(flat_logits[known], flat_target[known], reduction="none")
    outside = flat_target[known] == OUTSIDE

    def mean(values: torch.Tensor) -> float:
        return float(values.mean()) if values.numel() else float("nan")

    return {"task_cells": mean(cell_losses[~outside]), "task_outside": mean(cell_losses[outside])}


def masked_adaptive_pool(sequence: torch.Tensor, mask: torch.Tensor,
                         bins: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Average the real tokens of each example into ``bins[b]`` consecutive bins
    (like adaptive_avg_pool1d, over real tokens only, wherever they sit).
    sequence [B, T, D], mask [B, T] True = real, bins [B] -> [B, num_bins, D];
    bins beyond bins[b] are zero."""
    mask = mask.bool()
    real_count = mask.sum(1, keepdim=True)                      # [B, 1]
    rank = mask.long().cumsum(1) - 1                            # [B, T] index among real tokens
    j = torch.arange(num_bins, device=sequence.device).view(1, -1, 1)   # [1, P, 1]
    n = real_count.unsqueeze(-1)                                # [B, 1, 1]
    p = bins.view(-1, 1, 1)
    start = torch.div(j * n, p, rounding_mode="floor")
    end = torch.div((j + 1) * n + p - 1, p, rounding_mode="floor")   # ceil
    rank = rank.unsqueeze(1)                                    # [B, 1, T]
    member = (rank >= start) & (rank < end) & mask.unsqueeze(1) & (j < p)
    weights = member.float()
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
    return weights @ sequence


def distillation(student_hidden: torch.Tensor, student_mask: torch.Tensor,
                 teacher_features: torch.Tensor, teacher_mask: torch.Tensor,
                 projection: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(MSE, 1 - cosine) between the projected student states and the teacher features.

    Where an example's student and teacher sequences differ in length, both are
    average-pooled (over real tokens only) to the shorter of the two; where they agree
    they are compared token by token. Means are over real pooled positions.
    """
    student = projection(student_hidden).float()
    teacher = teacher_features.float()
    student_mask, teacher_mask = student_mask.bool(), teacher_mask.bool()
    if student_mask.shape == teacher_mask.shape and torch.equal(student_mask, teacher_mask):
        real = student_mask   # same tokens (the sage-seed student): no pooling needed
    else:
        common = torch.minimum(student_mask.sum(1), teacher_mask.sum(1)).clamp(min=1)
        num_bins = int(common.max())
        student = masked_adaptive_pool(student, student_mask, common, num_bins)
        teacher = masked_adaptive_pool(teacher, teacher_mask, common, num_bins)
        real = torch.arange(num_bins, device=common.device).view(1, -1) < common.view(-1, 1)
    mse = ((student - teacher) ** 2).mean(-1)[real].mean()
    cosine = F.cosine_similarity(student, teacher, dim=-1)[real]
    return mse, (1.0 - cosine).mean()


@dataclass(frozen=True)
class LossWeights:
    task: float = 1.0
    mse: float = 0.5
    cosine: float = 0.25


def combined_loss(output: StudentOutput, batch: dict, weights: LossWeights = LossWeights(),
                  projection: nn.Module | None = None, mode: str = "ce",
                  gamma: float = 2.0, class_weights: torch.Tensor | None = None,
                  region: str = "grid") -> dict[str, torch.Tensor]:
    """Every loss component and their weighted sum under "loss".

    Distillation is computed when the batch carries teacher features, a projection
    (the student's ``distill_projection``) is given and its weights are not both zero.
    """
    task = task_loss(output.logits, batch["target"], mode, gamma, class_weights, region)
    if output.earlier_logits:   # deep supervision: every refinement's answer counts alike
        earlier = [task_loss(logits, batch["target"], mode, gamma, class_weights, region)
                   for logits in output.earlier_logits]
        task = (task + sum(earlier)) / (1 + len(earlier))
    losses = {"task": task}
    total = weights.task * task
    wants_distillation = weights.mse != 0 or weights.cosine != 0
    if wants_distillation and projection is not None and "teacher_features" in batch:
        mse, cosine = distillation(output.hidden, output.hidden_mask,
                                   batch["teacher_features"], batch["teacher_mask"], projection)
        losses.update(mse=mse, cosine=cosine)
        total = total + weights.mse * mse + weights.cosine * cosine
    losses["loss"] = total
    return losses
