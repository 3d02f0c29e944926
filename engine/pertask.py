"""The per-task student: a small convolutional network that learns ONE task in seconds,
from that task's demonstration pairs only, and answers its test inputs.

How it answers a task (``solve_task``):
1. The output shape of each test input is inferred from the demonstrations
   (``engine.shapes``); the network only chooses colours.
2. Every output cell reads the input through several alignments plus descriptions of the
   aligned input cell and of the whole input (``engine.grid_features``).
3. The network trains on the demonstrations under the 8 dihedral transforms and random
   colour permutations. Colour 0, and every colour a demonstration's output introduces
   (one absent from its input), keeps its identity: such a colour means itself.
4. Each test input is predicted under the 8 transforms x several colour permutations,
   every prediction is mapped back, and the most voted grids (ties broken by the
   model's confidence) are attempts 1 and 2, always two distinct grids.
5. Beside the networks, the rule student (``engine.rule_tree``) looks for a shallow
   decision tree over the same cell features that explains every demonstration cell;
   where one exists, its grid is attempt 1 and the networks' first different grid is
   attempt 2. Where the tree is confident (fitted without each demonstration, it still
   predicts that demonstration), only the ensemble's first network trains.

``solve_task`` receives the demonstrations and the test *inputs* only: it cannot see a
test output. The same network class can be pretrained across many tasks
(``pretrain_state``) and then adapted per task from those weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.augment import NUM_DIHEDRAL, dihedral, inverse_dihedral
from engine.grid_features import (ALIGNMENTS, CHANNELS, COLOUR_BLOCK_CHANNELS, COLOURS, LAYOUT,
                                  cell_features, colour_channel_index)
from engine.rule_tree import input_questions, learn_rule, predict_rule
from engine.shapes import ShapeModel, infer_shapes

Grid = np.ndarray
IGNORE = -100


@dataclass(frozen=True)
class PerTaskSettings:
    steps: int = 300                 # training steps per task (upper bound)
    seconds: float | None = None     # wall-clock budget per task (whichever ends first)
    width: int = 64
    depth: int = 5
    colour_head: int = 0             # hidden width of the colour-equivariant head (0: none)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    cells_per_step: int = 3200       # output cells per training batch (sets the batch size)
    dihedral: bool = True            # train and vote over the 8 dihedral transforms
    colour_permutations: bool = True
    vote_permutations: int = 4       # colour permutations per transform at prediction
    models: int = 1                  # an ensemble sharing the budget (see model_variants)
    group_sparsity: float = 0.01     # penalty on each feature block's input weights (few blocks)
    feature_dropout: float = 0.0     # chance a feature block is hidden from a training sample
    changed_weight: float = 1.0      # loss weight of output cells whose colour differs from the input's
    bf16: bool = False               # train with bf16 arithmetic (autocast); predictions stay fp32
    rule: bool = True                # the rule student answers first where it explains every demonstration
    # Where the rule predicts every demonstration left out, one network model gives attempt 2,
    # with this share of a model's budget (None: the whole ensemble trains).
    confident_rule_share: float | None = 1 / 3
    seed: int = 0
    device: str = "cpu"              # where the network trains and predicts ("cuda:0" on a GPU)


class _Block(nn.Module):
    """Residual: a 3x3 (dilated) convolution of the grid plus a projection of the grid's
    masked mean, so every cell also sees the whole grid."""

    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation)
        self.pooled = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cells: torch.Tensor) -> torch.Tensor:
        if mask is None:   # every cell is real
            return x + F.gelu(self.conv(x) + self.pooled(x.sum((2, 3)) / cells)[:, :, None, None])
        mean = (x * mask).sum((2, 3)) / cells
        return x + F.gelu(self.conv(x) + self.pooled(mean)[:, :, None, None]) * mask


class ColourHead(nn.Module):
    """Scores every colour of every cell with one small network shared by all colours:
    it reads what that colour looks like from the cell (is it the aligned input cell,
    the tiled cell, the nearest colour to the left, present in the row, the most
    frequent...) plus the cell's context from the trunk. A rule learned for one colour
    ("the colour missing from the row and the column") then holds for every colour.
    A learned vector per colour index lets colours that mean themselves (0, introduced
    colours: never permuted) be told apart; for the others, augmentation makes the
    index meaningless and the head learns to ignore it."""

    def __init__(self, width: int, hidden: int, context: int = 16):
        super().__init__()
        self.context = nn.Conv2d(width, context, 1)
        self.colour_inputs = nn.Linear(len(COLOUR_BLOCK_CHANNELS), hidden)
        self.context_inputs = nn.Linear(context, hidden)
        self.identity = nn.Parameter(torch.zeros(COLOURS, hidden))
        self.out = nn.Linear(hidden, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.register_buffer("channels", torch.from_numpy(COLOUR_BLOCK_CHANNELS.T.copy()).flatten(),
                             persistent=False)

    def forward(self, features: torch.Tensor, trunk: torch.Tensor) -> torch.Tensor:
        b, _, h, w = features.shape
        per_colour = features[:, self.channels].view(b, COLOURS, -1, h, w).permute(0, 3, 4, 1, 2)
        context = self.context(trunk).permute(0, 2, 3, 1)[:, :, :, None]   # [B, H, W, 1, C]
        hidden = F.gelu(self.colour_inputs(per_colour) + self.context_inputs(context) + self.identity)
        return self.out(hidden)[..., 0].permute(0, 3, 1, 2)                  # [B, 10, H, W]


class PerTaskNet(nn.Module):
    """Cell features [B, CHANNELS, H, W] -> colour logits [B, 10, H, W].

    Besides the convolutional path, a direct *copy path* adds to the logits each
    alignment's colour one-hot times a learned weight per alignment: "copy the input
    cell", "copy the tiled cell" or "copy the cropped cell" is then one number to learn,
    and the convolutions only need to learn where the output differs. An optional
    colour head (``ColourHead``) generalises the copy path to every colour-indexed
    feature, through a small network shared by all colours."""

    def __init__(self, width: int = 64, depth: int = 5, colour_head: int = 0):
        super().__init__()
        self.width, self.depth = width, depth
        self.embed = nn.Conv2d(CHANNELS, width, 1)
        self.blocks = nn.ModuleList(_Block(width, dilation=(1, 2, 1, 4)[i % 4]) for i in range(depth))
        self.head = nn.Conv2d(width, COLOURS, 1)
        self.colour_head = ColourHead(width, colour_head) if colour_head else None
        self.copy_weights = nn.Parameter(torch.zeros(len(ALIGNMENTS)))
        channels = torch.arange(len(ALIGNMENTS))[:, None] * (COLOURS + 1) + torch.arange(COLOURS)
        self.register_buffer("copy_channels", channels.flatten(), persistent=False)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` [B, H, W] marks the real cells of padded grids; None: every cell is real
        and the masking multiplications are skipped."""
        # The residual stream stays float32 under autocast (the float32 mask makes it so).
        x = F.gelu(self.embed(features))
        if mask is None:
            b, _, h, w = features.shape
            cells = torch.full((b, 1), float(h * w), device=features.device)
            x = x.float()
        else:
            mask = mask[:, None].float()
            cells = mask.sum((2, 3)).clamp(min=1.0)
            x = x * mask
        for block in self.blocks:
            x = block(x, mask, cells)
        aligned = features[:, self.copy_channels].unflatten(1, (len(ALIGNMENTS), COLOURS))
        copied = (aligned * self.copy_weights[None, :, None, None, None]).sum(1)
        logits = self.head(x) + copied
        if self.colour_head is not None:
            logits = logits + self.colour_head(features, x)
        return logits


@dataclass
class TaskSolution:
    attempts: list[list[Grid]]       # per test input: two distinct grids, attempt 1 first
    losses: list[float]              # training loss per step
    steps: int
    seconds: float
    demo_exact: float                # share of demonstrations reproduced exactly (identity view)
    shapes: str                      # the inferred shape rule, in words
    fixed_colours: list[int] = field(default_factory=list)
    rule: str = ""                   # what the rule student found, in words ("" when not asked)
    rule_answered: bool = False      # its grid is attempt 1 of every test input


def fixed_colours(demos: list[tuple[Grid, Grid]]) -> list[int]:
    """Colours a permutation must not move: 0 (the usual background) and every colour that
    a demonstration's output introduces, absent from its input (it means itself)."""
    fixed = {0}
    for inp, out in demos:
        fixed |= set(np.unique(out).tolist()) - set(np.unique(inp).tolist())
    return sorted(int(c) for c in fixed)


def _random_permutation(rng: np.random.Generator, fixed: list[int]) -> np.ndarray:
    perm = np.arange(COLOURS)
    free = np.array([c for c in range(COLOURS) if c not in fixed])
    if free.size:
        perm[free] = rng.permutation(free)
    return perm


def _views(settings: PerTaskSettings) -> list[int]:
    return list(range(NUM_DIHEDRAL)) if settings.dihedral else [0]


def _transformed_shape(shape: tuple[int, int], k: int) -> tuple[int, int]:
    return dihedral(np.zeros(shape, dtype=np.uint8), k).shape


def _crop_corner(shapes: ShapeModel, grid: Grid) -> tuple[int, int] | None:
    box = shapes.crop_box(grid)
    return box[:2] if box is not None else None


def _features(shapes: ShapeModel, grid: Grid, output_shape: tuple[int, int], view: int = 0) -> np.ndarray:
    """Features of the output cells of ``grid`` (an input in the task's frame, its output
    of ``output_shape``) seen under dihedral ``view``."""
    view_grid = dihedral(grid, view)
    return cell_features(view_grid, _transformed_shape(output_shape, view),
                         crop=_crop_corner(shapes, view_grid), view=view)


def _pad(arrays: list[np.ndarray], height: int, width: int, value: float) -> np.ndarray:
    out = np.full((len(arrays), *arrays[0].shape[:-2], height, width), value, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, ..., :a.shape[-2], :a.shape[-1]] = a
    return out


class _TrainingSet:
    """Every demonstration under every dihedral transform, as padded tensors; colour
    permutations are applied per batch as a channel gather. The features are kept in the
    training arithmetic's type (bf16 autocast would cast them to it at every step anyway)."""

    def __init__(self, demos: list[tuple[Grid, Grid]], shapes: ShapeModel, views: list[int],
                 device: torch.device, dtype: torch.dtype = torch.float32):
        features, targets = [], []
        for inp, out in demos:
            for k in views:
                features.append(_features(shapes, inp, out.shape, k))
                targets.append(dihedral(out, k).astype(np.int64))
        height = max(t.shape[0] for t in targets)
        width = max(t.shape[1] for t in targets)
        self.features = torch.from_numpy(_pad(features, height, width, 0.0)).to(device, dtype)
        self.targets = torch.from_numpy(_pad(targets, height, width, IGNORE)).to(device)
        self.device = device
        self.size = len(targets)
        self.grid = (height, width)
        self.cells = height * width
        # Demonstrations of different output shapes are padded: only they need a mask.
        self.padded = any(t.shape != (height, width) for t in targets)

    def batch(self, rng: np.random.Generator, batch_size: int, fixed: list[int],
              permute: bool) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(rng.integers(self.size, size=batch_size)).to(self.device)
        targets = self.targets[index]
        if not permute:
            return self.features[index], targets
        perms = [_random_permutation(rng, fixed) for _ in range(batch_size)]
        channels = torch.from_numpy(np.stack([colour_channel_index(p) for p in perms])).to(self.device)
        # Pick and recolour in one row gather: row (sample, channel) of the [N * C, H * W] view.
        rows = (index[:, None] * CHANNELS + channels).flatten()
        features = self.features.view(-1, self.cells).index_select(0, rows).view(batch_size, CHANNELS, *self.grid)
        lookup = torch.from_numpy(np.stack(perms)).long().to(self.device)
        known = targets != IGNORE
        recoloured = torch.gather(lookup, 1, targets.clamp(min=0).flatten(1)).view_as(targets)
        return features, torch.where(known, recoloured, targets)


def build_network(settings: PerTaskSettings, state: dict | None = None) -> PerTaskNet:
    net = PerTaskNet(settings.width, settings.depth, settings.colour_head)
    if state is not None:
        net.load_state_dict(state)
    return net


# The feature block (engine.grid_features.LAYOUT) of every input channel.
BLOCK_OF_CHANNEL = torch.tensor([b for b, (_, width, _) in enumerate(LAYOUT.blocks) for _ in range(width)])


def block_norms(weight: torch.Tensor) -> torch.Tensor:
    """The norm of each feature block's input weights [blocks]: a penalty on their sum
    (a group lasso) drives whole blocks to zero, so the task is explained by few of them."""
    squares = weight.flatten(1).pow(2).sum(0)
    sums = torch.zeros(len(LAYOUT.blocks), device=weight.device).index_add_(
        0, BLOCK_OF_CHANNEL.to(weight.device), squares)
    return (sums + 1e-12).sqrt()


WARMUP = 0.1   # share of the budget spent warming the learning rate up
COPY_LR_SCALE = 10.0


def learning_rate_factor(progress: float) -> float:
    """Linear warm-up, then cosine decay to zero, over the budget's progress 0..1."""
    if progress < WARMUP:
        return (progress + 0.01) / (WARMUP + 0.01)
    return 0.5 * (1 + math.cos(math.pi * (progress - WARMUP) / (1 - WARMUP)))


def cell_loss(logits: torch.Tensor, features: torch.Tensor, targets: torch.Tensor,
              changed_weight: float) -> torch.Tensor:
    """Cross-entropy over the output's cells, where a cell whose colour differs from the
    input cell at the same place weighs ``changed_weight``. In most tasks most cells are
    copied, which the copy path learns at once; the few that change are the task, and
    unweighted they are a small share of the loss. Weight 4 fitted and solved more
    development tasks but fewer evaluation tasks, so the default stays 1 (README,
    "The per-task student")."""
    if changed_weight == 1:   # plain cross-entropy, exactly as the figures measured with it
        return F.cross_entropy(logits, targets, ignore_index=IGNORE)
    known = targets != IGNORE
    per_cell = F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="none")
    # The top-left alignment (the first feature block) is the input cell at the same place.
    input_colour = features[:, :COLOURS].argmax(1)
    inside_input = features[:, COLOURS] > 0.5
    changed = inside_input & (input_colour != targets.clamp(min=0))
    weight = torch.where(changed, changed_weight, 1.0) * known
    return (per_cell * weight).sum() / known.sum().clamp(min=1)


def train_on_demos(net: PerTaskNet, demos: list[tuple[Grid, Grid]], shapes: ShapeModel,
                   settings: PerTaskSettings, fixed: list[int], rng: np.random.Generator,
                   should_stop=None) -> list[float]:
    """Fit ``net`` to the demonstrations under augmentation; returns the loss per step."""
    device = next(net.parameters()).device
    data = _TrainingSet(demos, shapes, _views(settings), device,
                        torch.bfloat16 if settings.bf16 else torch.float32)
    batch_size = max(4, settings.cells_per_step // data.cells)
    # The copy path learns ten times faster and without decay: when one alignment explains
    # the demonstrations, it wins before the convolutions can memorise them.
    copy = [net.copy_weights]
    rest = [p for name, p in net.named_parameters() if name != "copy_weights"]
    optimizer = torch.optim.AdamW([{"params": rest, "lr_scale": 1.0, "weight_decay": settings.weight_decay},
                                   {"params": copy, "lr_scale": COPY_LR_SCALE, "weight_decay": 0.0}],
                                  lr=settings.lr)
    started = time.perf_counter()
    losses: list[torch.Tensor] = []   # read once at the end: reading each step would wait for a GPU
    net.train()
    for step in range(settings.steps):
        # Progress through the budget, by steps or by time, whichever runs out first.
        progress = step / settings.steps
        if settings.seconds is not None:
            progress = max(progress, (time.perf_counter() - started) / settings.seconds)
        if progress >= 1 or (should_stop is not None and should_stop()):
            break
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * group["lr_scale"] * learning_rate_factor(progress)
        features, targets = data.batch(rng, batch_size, fixed, settings.colour_permutations)
        if settings.feature_dropout:
            hidden = torch.from_numpy(rng.random((batch_size, len(LAYOUT.blocks))) < settings.feature_dropout)
            features = features * ~hidden[:, BLOCK_OF_CHANNEL, None, None].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.bf16):
            logits = net(features, targets != IGNORE if data.padded else None)
        loss = cell_loss(logits.float(), features, targets, settings.changed_weight)
        if settings.group_sparsity:
            loss = loss + settings.group_sparsity * block_norms(net.embed.weight).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    net.eval()
    return torch.stack(losses).tolist() if losses else []


@torch.no_grad()
def _predict_views(net: PerTaskNet, shapes: ShapeModel, grid: Grid, output_shape: tuple[int, int],
                   settings: PerTaskSettings, fixed: list[int], rng: np.random.Generator
                   ) -> list[tuple[Grid, float]]:
    """Predictions of ``grid``'s output under every view, mapped back to the original
    frame, each with its mean log-probability (the model's confidence)."""
    results = []
    perms = [np.arange(COLOURS)]
    if settings.colour_permutations:
        perms += [_random_permutation(rng, fixed) for _ in range(settings.vote_permutations - 1)]
    device = next(net.parameters()).device
    for k in _views(settings):
        base = torch.from_numpy(_features(shapes, grid, output_shape, k))
        # Every colour permutation of this view in one batch: one pass through the network.
        channels = torch.from_numpy(np.stack([colour_channel_index(perm) for perm in perms]))
        features = base[channels].to(device)
        confidence, cells = F.log_softmax(net(features), dim=1).max(1)
        confidence, cells = confidence.mean((1, 2)).cpu().tolist(), cells.cpu().numpy()
        for perm, perm_cells, perm_confidence in zip(perms, cells, confidence):
            inverse = np.argsort(perm)
            grid_back = inverse_dihedral(inverse[perm_cells].astype(np.uint8), k)
            results.append((grid_back, perm_confidence))
    # Each model casts one vote in all, spread over its views: a model whose views agree
    # puts its whole vote on one grid.
    return [(grid_back, confidence, 1.0 / len(results)) for grid_back, confidence in results]


def rank_candidates(views: list[tuple[Grid, float, float]]) -> list[tuple[Grid, float, float]]:
    """Distinct grids of (grid, confidence, weight) views with their summed vote weight and
    summed confidence, most voted first, ties broken by confidence. (Ranking instead by
    each candidate's likelihood summed over every view, a product of experts, measured
    no better: README, "Learning benchmarks".)"""
    table: dict[tuple, list] = {}
    for grid, confidence, weight in views:
        key = (grid.shape, grid.tobytes())
        entry = table.setdefault(key, [grid, 0.0, 0.0])
        entry[1] += weight
        entry[2] += confidence
    return sorted((tuple(e) for e in table.values()), key=lambda e: (-e[1], -e[2]))


def _two_attempts(views: list[tuple[Grid, float, float]], other_shape_views: list[tuple[Grid, float, float]],
                  second_choice) -> list[Grid]:
    """Two distinct answers: the two most voted grids of the most likely shape; when the
    views agree on one grid, the best grid of the next candidate shape; failing that,
    ``second_choice(first)``: the first grid with its least confident cell changed."""
    ranked = rank_candidates(views)
    attempts = [ranked[0][0]]
    one_view = min(weight for _, _, weight in views)
    if len(ranked) > 1 and ranked[1][1] > 1.5 * one_view:   # a runner-up more than one view chose
        attempts.append(ranked[1][0])
    elif other_shape_views:
        attempts.append(rank_candidates(other_shape_views)[0][0])
    elif len(ranked) > 1:
        attempts.append(ranked[1][0])
    else:
        attempts.append(second_choice(attempts[0]))
    return attempts


@torch.no_grad()
def _second_choice(net, shapes: ShapeModel, grid: Grid, first: Grid) -> Grid:
    device = next(net.parameters()).device
    features = torch.from_numpy(_features(shapes, grid, first.shape))[None].to(device)
    logits = net(features)[0].cpu()
    top2 = logits.topk(2, dim=0)
    margin = (top2.values[0] - top2.values[1]).numpy()
    r, c = np.unravel_index(int(np.argmin(margin)), margin.shape)
    second = first.copy()
    second[r, c] = int(top2.indices[1, r, c])
    if np.array_equal(second, first):   # the argmax disagreed with the vote there
        second[r, c] = int(top2.indices[0, r, c])
    return second


@torch.no_grad()
def demo_exact_share(net: PerTaskNet, demos, shapes: ShapeModel) -> float:
    hits = 0
    device = next(net.parameters()).device
    for inp, out in demos:
        features = torch.from_numpy(_features(shapes, inp, out.shape))[None].to(device)
        cells = net(features)[0].argmax(0).cpu().numpy()
        hits += bool(np.array_equal(cells, out))
    return hits / len(demos)


def model_variants(settings: PerTaskSettings) -> list[PerTaskSettings]:
    """The models of an ensemble, sharing the budget: the first with every augmentation,
    the second without dihedral transforms (for rules with a direction), the third
    without recolouring (for rules about particular colours), then other seeds."""
    count = max(1, settings.models)
    share = {"models": 1, "steps": max(1, settings.steps // count) if settings.steps else 0,
             "seconds": settings.seconds / count if settings.seconds else None}
    variants = [replace(settings, **share)]
    if count > 1 and settings.dihedral:
        variants.append(replace(settings, **share, dihedral=False))
    if count > 2 and settings.colour_permutations:
        variants.append(replace(settings, **share, colour_permutations=False))
    while len(variants) < count:
        variants.append(replace(settings, **share, seed=settings.seed + len(variants)))
    return variants


def _share_of(settings: PerTaskSettings, share: float) -> PerTaskSettings:
    """The same model with ``share`` of its steps and seconds."""
    return replace(settings, steps=max(1, round(settings.steps * share)) if settings.steps else 0,
                   seconds=settings.seconds * share if settings.seconds else None)


def solve_task(demos: list[tuple[Grid, Grid]], test_inputs: list[Grid],
               settings: PerTaskSettings = PerTaskSettings(), init_state: dict | None = None,
               should_stop=None) -> TaskSolution:
    """Learn the task from ``demos`` and answer each of ``test_inputs`` with two attempts.
    With several models, their views are pooled before voting: a model whose views agree
    on one grid weighs more than one whose views scatter. Deterministic for a given seed
    on CPU with one thread. Once ``should_stop`` answers yes, it returns after the current
    student's training with no attempts: the caller keeps no answer, so nothing is predicted."""
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    demos = [(np.asarray(i, dtype=np.uint8), np.asarray(o, dtype=np.uint8)) for i, o in demos]
    test_inputs = [np.asarray(g, dtype=np.uint8) for g in test_inputs]
    shapes = infer_shapes(demos)
    fixed = fixed_colours(demos)
    views = [[] for _ in test_inputs]
    other_shape_views = [[] for _ in test_inputs]
    losses: list[float] = []
    first_net = None
    rule, rule_answers, confident = _rule_answers(demos, test_inputs, shapes) if settings.rule else ("", None, False)
    variants = model_variants(settings)
    if confident and settings.confident_rule_share is not None:
        # The rule's grid is attempt 1 and the networks only give attempt 2: such a rule was
        # right in 87 of the 93 development tasks where it was found, and a third of a
        # model's steps rescued as many of the other 6 as all of them (README, "The rule student").
        variants = [_share_of(variants[0], settings.confident_rule_share)]
        rule += f"; one network model of {variants[0].steps} steps for the second attempt"
    for variant in variants:
        net = build_network(variant, init_state).to(settings.device)
        losses += train_on_demos(net, demos, shapes, variant, fixed, rng, should_stop)
        if should_stop is not None and should_stop():
            return TaskSolution([], losses, len(losses), time.perf_counter() - started, 0.0,
                                shapes.describe(), fixed)
        first_net = first_net or net
        for grid, pooled, other in zip(test_inputs, views, other_shape_views):
            candidates = shapes.candidates(grid)
            pooled += _predict_views(net, shapes, grid, candidates[0], variant, fixed, rng)
            if len(candidates) > 1:
                other += _predict_views(net, shapes, grid, candidates[1], variant, fixed, rng)
    attempts = [_two_attempts(pooled, other, lambda first, grid=grid: _second_choice(first_net, shapes, grid, first))
                for grid, pooled, other in zip(test_inputs, views, other_shape_views)]
    if rule_answers is not None:
        attempts = [_rule_first(answer, network) for answer, network in zip(rule_answers, attempts)]
    return TaskSolution(attempts, losses, len(losses), time.perf_counter() - started,
                        demo_exact_share(first_net, demos, shapes), shapes.describe(), fixed,
                        rule, rule_answers is not None)


def _rule_answers(demos: list[tuple[Grid, Grid]], test_inputs: list[Grid], shapes: ShapeModel
                  ) -> tuple[str, list[Grid] | None, bool]:
    """The rule student (``engine.rule_tree``): a shallow decision tree over the cell
    features that explains every demonstration cell. What it found in words; its grids,
    one per test input, or None where no such tree exists or it does not apply to a test
    input; and whether it is confident: the tree fitted without each demonstration
    predicts that demonstration (leave-one-out 100%)."""
    def features(grid: Grid, output_shape: tuple[int, int]) -> np.ndarray:
        return np.concatenate([_features(shapes, grid, output_shape),
                               input_questions(grid, output_shape, _crop_corner(shapes, grid))])

    fit = learn_rule([features(inp, out.shape) for inp, out in demos], [out for _, out in demos])
    if fit is None:
        return "no shallow rule explains the demonstrations", None, False
    words = (f"a rule {fit.depth} question{'s' * (fit.depth != 1)} deep explains the demonstrations "
             f"(leave-one-out {fit.leave_one_out:.0%})")
    answers = [predict_rule(fit.tree, features(grid, shapes.candidates(grid)[0]))
               for grid in test_inputs]
    if any(answer is None for answer in answers):
        return words + ", but does not apply to a test input", None, False
    return words, answers, fit.leave_one_out == 1.0


def _rule_first(rule_answer: Grid, network_attempts: list[Grid]) -> list[Grid]:
    """The rule's grid first, then the networks' first attempt that differs from it."""
    different = [a for a in network_attempts if not np.array_equal(a, rule_answer)]
    return [rule_answer, different[0]]   # the networks' two attempts differ: one differs from the rule
