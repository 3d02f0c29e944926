"""Pretraining the per-task student across many tasks (``student=pertask``).

The per-task network reads no demonstrations: across tasks it can only learn a prior
(which alignments and cell descriptions tend to matter, how ARC outputs relate to their
inputs), which test-time training then adapts to each task. Every step trains on random
pairs of random training tasks, each under a random dihedral view and recolouring drawn
from (seed, step), so a stopped run resumes exactly. Validation answers the held-out
tasks' test inputs without adapting (zero-shot, voted over views); the question the
pretraining must answer is whether it makes test-time training better than a fresh
start at the same budget (``bench/arc_generalise.py --checkpoint``).
"""

from __future__ import annotations

from dataclasses import replace

import time

import numpy as np
import torch
import torch.nn.functional as F

from engine.augment import NUM_DIHEDRAL, dihedral
from engine.checkpoints import apply_retention, load_state, save_checkpoint
from engine.config import TrainConfig
from engine.grid_features import colour_channel_index
from engine.pertask import (IGNORE, PerTaskNet, PerTaskSettings, _features, _pad,
                            _random_permutation, fixed_colours, solve_task)
from engine.predict import pick_device
from engine.runner import RunContext
from engine.shapes import infer_shapes

# Width and depth of the per-task network for each preset.
PERTASK_PRESETS = {"tiny": (32, 3), "small": (64, 5), "base": (96, 6), "seed": (128, 8)}


def pertask_settings(cfg: TrainConfig) -> PerTaskSettings:
    width, depth = PERTASK_PRESETS[cfg.preset]
    return PerTaskSettings(width=width, depth=depth, seed=cfg.seed)


class _Pairs:
    """Every (input, output) pair of the training queries, with each task's shape rules
    and fixed colours (a pair's own output shape is known in training)."""

    def __init__(self, queries):
        self.items = []
        cache: dict[str, tuple] = {}
        for task, kind, index in queries:
            if task.id not in cache:
                demos = [(p.input, p.output) for p in task.train]
                cache[task.id] = (infer_shapes(demos), fixed_colours(demos))
            pair = task.pairs(kind)[index]
            self.items.append((pair.input, pair.output, *cache[task.id]))

    def batch(self, rng: np.random.Generator, size: int, augment: bool):
        features, targets = [], []
        for i in rng.integers(len(self.items), size=size):
            inp, out, shapes, fixed = self.items[i]
            k = int(rng.integers(NUM_DIHEDRAL)) if augment else 0
            perm = _random_permutation(rng, fixed) if augment else np.arange(10)
            features.append(_features(shapes, inp, out.shape, k)[colour_channel_index(perm)])
            targets.append(perm[dihedral(out, k)].astype(np.int64))
        height = max(t.shape[0] for t in targets)
        width = max(t.shape[1] for t in targets)
        return (torch.from_numpy(_pad(features, height, width, 0.0)),
                torch.from_numpy(_pad(targets, height, width, IGNORE)))


def train_pertask(ctx: RunContext, cfg: TrainConfig, resume: bool = False,
                  checkpoint_id: int | None = None) -> str:
    from engine.train import prepare_data

    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    data = prepare_data(cfg, ctx)
    settings = pertask_settings(cfg)
    net = PerTaskNet(settings.width, settings.depth, settings.colour_head).to(device)
    ctx.event("model", f"pertask/{cfg.preset} student, {sum(p.numel() for p in net.parameters()):,} "
                       f"parameters, on {device}")
    if ctx.is_writer:
        ctx.store.update_run(ctx.run_id, device=str(device), config=cfg.to_dict())
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    pairs = _Pairs(data.train)
    total_steps = cfg.max_steps or cfg.epochs * max(1, len(pairs.items) // cfg.batch_size)
    step = 0
    if resume:
        step = _restore(ctx, checkpoint_id, net, optimizer)

    def checkpoint(reason: str, metrics: dict) -> None:
        if not ctx.is_writer:
            return
        ctx.flush()
        state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                 "rng": torch.get_rng_state(), "config": cfg.to_dict(),
                 "student": {"kind": "pertask", "preset": cfg.preset, "width": settings.width,
                             "depth": settings.depth, "colour_head": settings.colour_head, "teacher_dim": 0}}
        saved = save_checkpoint(ctx.store, ctx.workspace, ctx.run_id, ctx.run_dir, state, step,
                                step / total_steps, metrics, reason)
        apply_retention(ctx.store, ctx.workspace, ctx.run_id, cfg.keep_last)
        ctx.event("checkpoint", f"checkpoint at step {step} ({reason})", {"checkpoint_id": saved.id})

    def validate() -> dict:
        metrics = {}
        state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        zero_shot = replace(settings, steps=0)
        for prefix, tasks in (("val", data.val_tasks), ("eval", data.eval_tasks)):
            scores = []
            for task in tasks:
                solution = solve_task([(p.input, p.output) for p in task.train],
                                      [p.input for p in task.test], zero_shot, init_state=state)
                scores.append(np.mean([any(np.array_equal(a, p.output) for a in attempts)
                                       for attempts, p in zip(solution.attempts, task.test)]))
            if scores:
                metrics[f"{prefix}_pass2"] = float(np.mean(scores))
        if metrics:
            ctx.log_metrics(step, metrics)
        return metrics

    ctx.set_progress(total_steps=total_steps, step=step)
    last_metrics: dict = {}
    last_checkpoint = time.time()
    net.train()
    while step < total_steps:
        started = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, step])   # the batch is a function of (seed, step)
        features, targets = pairs.batch(rng, cfg.batch_size, cfg.augment)
        features, targets = features.to(device), targets.to(device)
        logits = net(features, targets != IGNORE)
        loss = F.cross_entropy(logits, targets, ignore_index=IGNORE)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        known = targets != IGNORE
        right = (logits.argmax(1) == targets) & known
        exact = (right | ~known).flatten(1).all(1).float().mean()
        ctx.log_metrics(step, {"loss": float(loss.detach()), "train_cell_acc": float(right.sum() / known.sum()),
                               "train_exact": float(exact), "lr": cfg.lr,
                               "examples_per_s": cfg.batch_size / (time.perf_counter() - started)})
        ctx.set_progress(step=step, progress=step / total_steps)
        if step % cfg.val_every_steps == 0:
            last_metrics = validate()
            net.train()
        if ctx.should_stop:
            checkpoint("stop", last_metrics)
            return "stopped"
        due = step % cfg.checkpoint_every_steps == 0 or \
            (time.time() - last_checkpoint) / 60 >= cfg.checkpoint_every_minutes
        if due and step < total_steps:
            checkpoint("periodic", last_metrics)
            last_checkpoint = time.time()
    checkpoint("final", validate())
    return "finished"


def _restore(ctx: RunContext, checkpoint_id: int | None, net, optimizer) -> int:
    checkpoints = ctx.store.checkpoints(ctx.run_id)
    chosen = ctx.store.get_checkpoint(checkpoint_id) if checkpoint_id is not None else \
        (checkpoints[-1] if checkpoints else None)
    if chosen is None:
        ctx.event("warning", "no checkpoint to resume from: starting from step 0")
        return 0
    state = load_state(ctx.absolute(chosen.path))
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    if ctx.is_writer:
        ctx.store.truncate_metrics_after(ctx.run_id, state["step"])
        ctx.event("resumed", f"resumed from checkpoint {chosen.id} at step {state['step']}",
                  {"checkpoint_id": chosen.id, "step": state["step"]})
    return state["step"]
