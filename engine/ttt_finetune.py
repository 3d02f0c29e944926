"""Test-time fine-tuning of a student that reads demonstrations (``standalone``).

A copy of the trained student is fine-tuned on one task's leave-one-out queries: each
demonstration in turn is the query and the others its context (``engine.arc.query_view``
decides that view), under random dihedral x colour-permutation augmentation, and
translation where the checkpoint was trained with it (``augment_translate``). Then each
test input is predicted under dihedral x colour-permutation views (never translated),
mapped back and voted. A student with a task embedding gives the task a row of its
own, starting at the mean of the learned ones, and fine-tunes it too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from engine.arc import ArcTask, Pair
from engine.augment import (NUM_DIHEDRAL, augment_task, random_colour_permutation,
                            random_translation, undo_prediction, vote)
from engine.encoding import batch_to, build_example, collate
from engine.losses import task_loss
from engine.predict import predict_grids
from engine.student import build_from_spec

FINETUNE_LR = 3e-4


@dataclass
class FinetuneSolution:
    attempts: list[list[np.ndarray]]
    losses: list[float]
    seconds: float
    demo_exact: float
    shapes: str = "predicted by the student"
    rule: str = ""                  # the rule student answers only for per-task students
    rule_answered: bool = False


def adapt_and_answer(start: dict, demos, test_inputs, should_stop) -> FinetuneSolution:
    started = time.perf_counter()
    settings = start["settings"]
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    device = torch.device(settings.device)
    model = build_from_spec(start["student"])
    model.load_state_dict(start["state"])
    model.to(device)
    max_demos = start["train_config"].get("max_demos")
    task = ArcTask("task", tuple(Pair(np.asarray(i), np.asarray(o)) for i, o in demos),
                   tuple(Pair(np.asarray(i), None) for i in test_inputs))

    def out_of_time() -> bool:
        return ((settings.seconds is not None and time.perf_counter() - started > settings.seconds)
                or should_stop())

    losses = fine_tune(model, task, start["train_config"], settings.steps, rng, out_of_time, device)
    fitted = predict_grids(model, [(task, "train", i) for i in range(len(task.train))], max_demos, device)
    demo_exact = float(np.mean([np.array_equal(g, p.output) for g, p in zip(fitted, task.train)]))
    views = [(0, np.arange(10, dtype=np.uint8))] + [
        (int(rng.integers(NUM_DIHEDRAL)), random_colour_permutation(rng))
        for _ in range(max(1, settings.vote_permutations) * NUM_DIHEDRAL - 1)]
    candidates: list[list[np.ndarray]] = [[] for _ in test_inputs]
    for k, perm in views:
        view = augment_task(task, k, perm)
        grids = predict_grids(model, [(view, "test", i) for i in range(len(test_inputs))], max_demos, device)
        for slot, grid in enumerate(grids):
            candidates[slot].append(undo_prediction(grid, k, perm))
    attempts = []
    for grids in candidates:
        ranked = vote(grids)
        attempts.append(ranked[:2] if len(ranked) > 1 else [ranked[0], _changed_corner(ranked[0])])
    return FinetuneSolution(attempts, losses, time.perf_counter() - started, demo_exact)


def fine_tune(model, task: ArcTask, train_config: dict, steps: int, rng: np.random.Generator,
              out_of_time, device: torch.device = torch.device("cpu")) -> list[float]:
    """Fine-tune ``model`` on the task's leave-one-out queries, augmented as its training
    run was, for ``steps`` steps or until ``out_of_time()``; the loss of each step."""
    max_demos = train_config.get("max_demos")
    max_shift = train_config.get("augment_translate", 0)
    model.add_task(task.id)   # before the optimizer is made, so it trains the task's row
    model.to(device)          # the task's new row too
    optimizer = torch.optim.AdamW(model.parameters(), lr=FINETUNE_LR, weight_decay=0.0)
    losses: list[float] = []
    model.train()
    for _ in range(steps):
        if out_of_time():
            break
        examples = []
        for index in range(len(task.train)):
            view = augment_task(task, int(rng.integers(NUM_DIHEDRAL)), random_colour_permutation(rng))
            if max_shift:
                view = random_translation(view, "train", max_shift, rng)
            examples.append(build_example(view, "train", index, max_demos))
        batch = batch_to(collate(examples), device)
        loss = task_loss(model(batch).logits, batch["target"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def _changed_corner(grid: np.ndarray) -> np.ndarray:
    """A second, distinct attempt when every view agreed: the first with one cell changed
    (the official rule allows two attempts; repeating the first wastes one)."""
    second = np.array(grid, dtype=np.uint8)
    if not second.size:   # an empty first answer: the smallest grid is the other guess
        return np.zeros((1, 1), dtype=np.uint8)
    second[-1, -1] = (int(second[-1, -1]) + 1) % 10
    return second
