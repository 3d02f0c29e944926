"""The training job: distil teacher features into a SAGE student, honestly measured.

Exact resume is a design goal: the data order of an epoch is a pure function of
(seed, epoch), augmentation draws come from (seed, step), and the checkpoint carries
model, optimizer, scheduler, scaler and RNG states plus the position in the epoch.
A run stopped and resumed logs the same losses, step for step, as one never stopped.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass

# Before torch touches CUDA: lets the allocator grow segments instead of fragmenting,
# the fix the original project found only after an OOM hours into a run.
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine import distributed  # noqa: E402
from engine.arc import ArcTask, all_queries, example_id, load_dataset, select_tasks  # noqa: E402
from engine.augment import augment_task, random_colour_permutation, random_translation  # noqa: E402
from engine.checkpoints import apply_retention, load_state, save_checkpoint  # noqa: E402
from engine.config import TrainConfig  # noqa: E402
from engine.encoding import batch_to, build_example, collate  # noqa: E402
from engine.integrity import (baseline_figures, find_overlap, overlap_message,  # noqa: E402
                              split_run_tasks, trivially_solvable)
from engine.losses import LossWeights, combined_loss, task_loss_parts  # noqa: E402
from engine.predict import evaluate_queries, pick_device  # noqa: E402
from engine.runner import JobFailed, RunContext  # noqa: E402
from engine.scoring import batch_metrics  # noqa: E402
from engine.student import build_student, count_parameters, student_spec  # noqa: E402


@dataclass
class TrainData:
    train: list[tuple[ArcTask, str, int]]        # queries trained on
    val_tasks: list[ArcTask]                      # held-out tasks: their test inputs validate
    eval_tasks: list[ArcTask]                     # e.g. ARC-AGI-1 evaluation split
    features: object | None = None                # FeatureStore, when distilling
    feature_buffer: torch.Tensor | None = None    # reused for every batch: no page faults


def prepare_data(cfg: TrainConfig, ctx: RunContext) -> TrainData:
    dataset = load_dataset(cfg.dataset)
    for problem in dataset.problems:
        ctx.event("bad_task", f"skipped task {problem}")
    # Split by task, never by example: a validation task is never seen in training.
    train, val = split_run_tasks(dataset.tasks, cfg.task_ids, cfg.max_tasks, cfg.max_grid,
                                 cfg.val_tasks, cfg.seed)
    if not train:
        raise JobFailed(f"{len(val)} tasks match the settings, but val_tasks={cfg.val_tasks} "
                        f"would leave none to train on: lower val_tasks or max_grid limits")
    eval_tasks: list[ArcTask] = []
    queries = all_queries(train)
    if cfg.eval_dataset:
        eval_set = load_dataset(cfg.eval_dataset)
        eval_tasks = select_tasks(eval_set.tasks, max_tasks=cfg.eval_max_tasks)
        if cfg.eval_demos:   # their demonstration pairs only: kind "train", never "test"
            demo_tasks = select_tasks(eval_set.tasks, max_grid=cfg.max_grid)
            queries += all_queries(demo_tasks, kinds=("train",))
            ctx.event("data", f"transductive: also training on the demonstration pairs of "
                              f"{len(demo_tasks)} tasks of {cfg.eval_dataset} (never their test outputs)")
    # By content: a held-out or evaluation task whose pairs a training task holds.
    for name, scored in (("held-out validation", val), (cfg.eval_dataset, eval_tasks)):
        overlap = find_overlap(train, scored)
        if overlap:
            ctx.event("warning", overlap_message(cfg.dataset, overlap, name, len(scored))
                      + f": {', '.join(overlap[:8])}" + (" …" if len(overlap) > 8 else ""),
                      {"overlapping_tasks": overlap})
    features = None
    if cfg.features:
        from engine.features import open_store_for_training
        features = open_store_for_training(ctx.workspace, cfg.features, dataset)
        needed = [example_id(t.id, k, i) for t, k, i in all_queries(train)]
        if cfg.student == "sage-seed":  # it reads features at validation too
            needed += [example_id(t.id, "test", i) for t in val for i in range(len(t.test))]
        missing = [i for i in needed if i not in features]
        if missing:
            raise JobFailed(f"feature store {cfg.features} lacks {len(missing)} of the {len(needed)} "
                            f"examples this run needs (first: {missing[0]}): extract them with "
                            f"sage-engine extract --dataset {cfg.dataset} --store {cfg.features}")
    trivial = trivially_solvable(queries, cfg.max_demos)
    held_out = trivially_solvable(all_queries(val + eval_tasks, kinds=("test",)), cfg.max_demos)
    ctx.event("data", f"{len(train)} training tasks ({len(queries)} queries), "
                      f"{len(val)} held-out tasks, {len(eval_tasks)} evaluation tasks; trivially "
                      f"solvable training queries: {trivial['answer_in_demos']} with the answer among "
                      f"the demonstrations seen, {trivial['answer_is_input']} with the answer equal "
                      f"to the input",
              {"training_queries": trivial, "held_out_test_inputs": held_out})
    return TrainData(queries, val, eval_tasks, features)


def lr_lambda(cfg: TrainConfig, total_steps: int):
    """Linear warmup, then cosine decay to min_lr_ratio of the peak."""
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


BUCKET_BATCHES = 8  # batches whose examples are sorted by length together


def epoch_batches(seed: int, epoch: int, lengths: list[int], batch_size: int) -> list[list[int]]:
    """The micro-batches of one epoch, a pure function of (seed, epoch).

    Examples are shuffled, then sorted by a jittered length within groups of
    BUCKET_BATCHES batches, so a batch pads to similar lengths (about 2.5x faster on
    CPU than random batches) while its members still change from epoch to epoch; the
    batches of a group are shuffled again."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    group = batch_size * BUCKET_BATCHES
    for start in range(0, len(order), group):
        jitter = {i: lengths[i] * rng.uniform(0.7, 1.3) for i in order[start:start + group]}
        chunk = sorted(jitter, key=jitter.get)
        chunk_batches = [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(chunk_batches)
        batches.extend(chunk_batches)
    return batches



def make_batch(cfg: TrainConfig, data: TrainData, queries: list[tuple[ArcTask, str, int]],
               step: int, device: torch.device) -> dict:
    # Augmentation draws depend only on (seed, step): a resumed run redraws the same ones.
    rng = np.random.default_rng([cfg.seed, step])
    examples = []
    for task, kind, index in queries:
        if cfg.augment:
            task = augment_task(task, int(rng.integers(8)), random_colour_permutation(rng))
        if cfg.augment_translate:   # drawn after the others: runs without it draw as before
            task = random_translation(task, kind, cfg.augment_translate, rng)
        examples.append(build_example(task, kind, index, cfg.max_demos))
    teacher = None
    if data.features is not None:
        # Augmented grids keep the un-augmented teacher features: the teacher is a
        # training signal about the task, not about this particular view of it.
        if data.feature_buffer is None:
            longest = data.features.summary()["tokens_max"]
            data.feature_buffer = torch.empty((cfg.batch_size, longest, data.features.feature_dim),
                                              dtype=data.features.torch_dtype)
        feats, mask = data.features.batch([example_id(t.id, k, i) for t, k, i in queries],
                                          out=data.feature_buffer)
        teacher = {"teacher_features": feats, "teacher_mask": mask}
    batch = collate(examples, teacher)
    return batch_to(batch, device, non_blocking=True)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train_job(ctx: RunContext, resume: bool = False, checkpoint_id: int | None = None) -> str:
    cfg = TrainConfig.from_dict(ctx.config)
    if cfg.student == "pertask":   # a convolutional network over cell features: its own loop
        from engine.pertask_train import train_pertask
        return train_pertask(ctx, cfg, resume, checkpoint_id)
    dist = distributed.setup()
    device = pick_device(cfg.device, dist.local_rank)
    if device.type == "cuda" and cfg.gpu_memory_fraction is not None:
        torch.cuda.set_per_process_memory_fraction(cfg.gpu_memory_fraction, device)
    torch.manual_seed(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    data = prepare_data(cfg, ctx)
    teacher_dim = data.features.feature_dim if data.features is not None else 0
    # A task embedding has a row per task trained on (evaluation tasks too, with eval_demos).
    task_ids = sorted({task.id for task, _, _ in data.train}) if cfg.task_embedding else ()
    model = build_student(cfg.student, cfg.preset, teacher_dim=teacher_dim, task_ids=task_ids,
                          task_embedding=cfg.task_embedding).to(device)
    ctx.event("model", f"{cfg.student}/{cfg.preset} student, {count_parameters(model):,} parameters, "
                       f"on {device}" + (f", {dist.world_size} processes" if dist.world_size > 1 else ""))
    if ctx.is_writer:
        # The full settings, defaults included, so the run's config view shows everything.
        ctx.store.update_run(ctx.run_id, device=str(device), config=cfg.to_dict())
    train_model = dist.wrap(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Tokens each query gives the student, for length-bucketed batches.
    lengths = [len(build_example(t, k, i, cfg.max_demos)["tokens"]) for t, k, i in data.train]
    micro_batches_per_epoch = math.ceil(len(data.train) / cfg.batch_size)
    batches_per_epoch = math.ceil(micro_batches_per_epoch / cfg.grad_accum)
    total_steps = cfg.max_steps or cfg.epochs * batches_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    # bf16 needs no loss scaling; the scaler exists (disabled) so fp16 could be added
    # without changing the checkpoint format.
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    weights = LossWeights(task=cfg.w_task, mse=cfg.w_mse, cosine=cfg.w_cosine)

    step, epoch, batch_in_epoch = 0, 0, 0
    if resume:
        step, epoch, batch_in_epoch = _restore(ctx, checkpoint_id, model, optimizer, scheduler, scaler)

    # Validation figures belong to the weights they were measured on: a checkpoint
    # carries them only when validation ran at its very step, else none ("not validated").
    validated = {"step": None, "metrics": {}}
    validation_sets = [(prefix, tasks) for prefix, tasks in (("val", data.val_tasks),
                                                             ("eval", data.eval_tasks)) if tasks]
    # The no-learning baseline of each set, once: the reference line on its curves.
    baselines = {f"{prefix}_{key}": value for prefix, tasks in validation_sets
                 for key, value in baseline_figures(tasks).items() if key.startswith("baseline_")}

    def validate() -> dict:
        metrics = {}
        model.eval()
        for prefix, tasks in validation_sets:
            result = evaluate_queries(model, tasks, cfg, device, data.features)
            metrics.update({f"{prefix}_{k}": v for k, v in result.summary().items()})
        model.train()
        if metrics:
            metrics.update(baselines)
            ctx.log_metrics(step, metrics)
        validated.update(step=step, metrics=metrics)
        return metrics

    def checkpoint(reason: str, may_validate: bool = True) -> None:
        """Save a checkpoint of this step. It validates first where validation is on and
        has not run at this step, unless ``may_validate`` is False (a stop, an OOM: no
        time or memory to spare), in which case the checkpoint records no figures."""
        if not ctx.is_writer:
            return
        if validated["step"] != step and may_validate and validation_sets:
            validate()
        metrics = validated["metrics"] if validated["step"] == step else {}
        # Every metric row up to this step is in the database before the checkpoint is:
        # a run killed later and resumed from here then misses no step.
        ctx.flush()
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                 "rng": rng_state(), "step": step, "epoch": epoch,
                 "batch_in_epoch": batch_in_epoch, "config": cfg.to_dict(),
                 "student": student_spec(model, cfg.student, cfg.preset)}
        saved = save_checkpoint(ctx.store, ctx.workspace, ctx.run_id, ctx.run_dir, state, step,
                                epoch + batch_in_epoch / batches_per_epoch, metrics, reason)
        apply_retention(ctx.store, ctx.workspace, ctx.run_id, cfg.keep_last)
        figures = "validated" if metrics else "not validated"
        ctx.event("checkpoint", f"checkpoint at step {step} ({reason}, {figures}, "
                                f"{saved.size_bytes / 2**20:.1f} MiB)",
                  {"checkpoint_id": saved.id, "step": step, "validated": bool(metrics)})

    ctx.set_progress(total_steps=total_steps, step=step)
    last_checkpoint_time = time.time()
    loop_started, first_step = time.perf_counter(), step  # for the ETA: this process's pace
    model.train()
    try:
        while step < total_steps and epoch < cfg.epochs:
            micro_batches = epoch_batches(cfg.seed, epoch, lengths, cfg.batch_size)
            while batch_in_epoch < batches_per_epoch and step < total_steps:
                started = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                components_sum: dict[str, float] = {}
                metrics_sum: dict[str, float] = {}
                n_examples = 0
                for micro in range(cfg.grad_accum):
                    position = batch_in_epoch * cfg.grad_accum + micro
                    if position >= len(micro_batches):
                        continue
                    indices = micro_batches[position]
                    # Each rank takes its share of the global batch.
                    indices = indices[dist.rank::dist.world_size]
                    batch = make_batch(cfg, data, [data.train[i] for i in indices],
                                       step * cfg.grad_accum + micro, device)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                        out = train_model(batch)
                        losses = combined_loss(out, batch, weights, model.distill_projection,
                                               cfg.loss, cfg.focal_gamma, region=cfg.loss_region)
                    scaler.scale(losses["loss"] / cfg.grad_accum).backward()
                    for key, value in losses.items():
                        name = key if key == "loss" else f"loss_{key}"
                        components_sum[name] = components_sum.get(name, 0.0) + float(value.detach()) * len(indices)
                    # Figures of the (augmented) training batch: train_*, never mistaken for
                    # held-out results; and the task loss split over real and outside cells.
                    scores = batch_metrics(out.logits.detach(), batch["target"])
                    scores.pop("examples")
                    scores = {f"train_{key}": value for key, value in scores.items()}
                    scores.update({f"loss_{key}": value for key, value in
                                   task_loss_parts(out.logits.detach(), batch["target"]).items()})
                    for key, value in scores.items():
                        metrics_sum[key] = metrics_sum.get(key, 0.0) + value * len(indices)
                    n_examples += len(indices)
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                lr = scheduler.get_last_lr()[0]
                scheduler.step()
                step += 1
                batch_in_epoch += 1
                totals = dist.sum_floats([n_examples, *components_sum.values(), *metrics_sum.values()])
                n_total = max(1.0, totals[0])
                values = dict(zip([*components_sum, *metrics_sum], (v / n_total for v in totals[1:])))
                elapsed = time.perf_counter() - started
                values.update(lr=lr, grad_norm=float(grad_norm), examples_per_s=n_total / elapsed,
                              epoch=epoch + batch_in_epoch / batches_per_epoch)
                if device.type == "cuda":
                    values.update(_cuda_memory(device))
                    ctx.set_gauges(**{k: v for k, v in values.items() if k.startswith("torch_")})
                ctx.log_metrics(step, values)
                seconds_per_step = (time.perf_counter() - loop_started) / (step - first_step)
                ctx.set_progress(step=step, epoch=values["epoch"], progress=step / total_steps,
                                 eta_s=(total_steps - step) * seconds_per_step)

                if step % cfg.val_every_steps == 0 and validation_sets:
                    validate()
                if dist.any_flag(ctx.should_stop):
                    checkpoint("stop", may_validate=False)
                    return "stopped"
                minutes = (time.time() - last_checkpoint_time) / 60
                due = step % cfg.checkpoint_every_steps == 0 or minutes >= cfg.checkpoint_every_minutes
                if due and step < total_steps:  # the last step gets the final checkpoint below
                    checkpoint("periodic")
                    last_checkpoint_time = time.time()
            if batch_in_epoch >= batches_per_epoch:
                epoch += 1
                batch_in_epoch = 0
        checkpoint("final")
        return "finished"
    except torch.OutOfMemoryError as exc:
        raise _out_of_memory(ctx, cfg, device, step, checkpoint) from exc
    finally:
        dist.cleanup()


def _cuda_memory(device: torch.device) -> dict[str, float]:
    return {"torch_allocated_mb": torch.cuda.memory_allocated(device) / 2**20,
            "torch_reserved_mb": torch.cuda.memory_reserved(device) / 2**20,
            "torch_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20}


def _out_of_memory(ctx: RunContext, cfg: TrainConfig, device: torch.device, step: int,
                   checkpoint) -> JobFailed:
    """Record a CUDA OOM (figures, batch size, a checkpoint of the last completed step)
    and return the failure to raise, with a hint that says what to change."""
    figures = _cuda_memory(device) if device.type == "cuda" else {}
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        figures.update(free_mb=free / 2**20, total_mb=total / 2**20)
    figures.update(batch_size=cfg.batch_size, grad_accum=cfg.grad_accum, step=step)
    hint = (f"out of memory at step {step} with batch_size={cfg.batch_size}: lower batch_size "
            f"(e.g. {max(1, cfg.batch_size // 2)}) and raise grad_accum "
            f"(e.g. {cfg.grad_accum * 2}) to keep the same effective batch, then resume")
    ctx.event("oom", hint, figures)
    try:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if step > 0:  # the state of the last completed step; at step 0 there is none
            checkpoint("oom", may_validate=False)
    except Exception as save_error:  # memory may be too tight even for this
        ctx.event("warning", f"could not write a checkpoint after the OOM: {save_error}")
    return JobFailed(hint)


def _restore(ctx: RunContext, checkpoint_id: int | None, model, optimizer, scheduler,
             scaler) -> tuple[int, int, int]:
    checkpoints = ctx.store.checkpoints(ctx.run_id)
    if checkpoint_id is not None:
        chosen = ctx.store.get_checkpoint(checkpoint_id)
    elif checkpoints:
        chosen = checkpoints[-1]
    else:
        ctx.event("warning", "no checkpoint to resume from: starting from step 0")
        if ctx.is_writer:
            ctx.store.truncate_metrics_after(ctx.run_id, 0)
        return 0, 0, 0
    state = load_state(ctx.absolute(chosen.path))
    saved_rows, rows = state.get("student", {}).get("task_ids", []), getattr(model, "task_ids", [])
    if saved_rows != rows:
        raise JobFailed(f"the task embedding rows of checkpoint {chosen.id} ({len(saved_rows)} tasks) "
                        f"differ from those this run's data gives ({len(rows)} tasks): resume with "
                        f"the settings the checkpoint was trained with")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    if ctx.is_writer:
        # Rows the interrupted process logged after this checkpoint are replaced, never doubled.
        removed = ctx.store.truncate_metrics_after(ctx.run_id, state["step"])
        ctx.event("resumed", f"resumed from checkpoint {chosen.id} at step {state['step']}"
                             + (f"; {removed} metric rows after it replaced" if removed else ""),
                  {"checkpoint_id": chosen.id, "step": state["step"]})
    return state["step"], state["epoch"], state["batch_in_epoch"]

