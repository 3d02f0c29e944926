"""The cross-task recipe's options in real training runs: translation augmentation and a
per-task embedding keep exact resume, the checkpoint names each embedding row's task, and
evaluation (plain or with test-time fine-tuning) finds it."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from db.store import Store
from engine.arc import ArcTask, Pair, all_queries, load_dataset, select_tasks
from engine.checkpoints import load_state
from engine.config import TrainConfig
from engine.evaluate import eval_job
from engine.runner import run_job
from engine.student import build_from_spec
from engine.train import TrainData, make_batch, train_job
from engine.ttt_finetune import fine_tune

# 6 steps, all inside the default 20 warmup steps: a run of 3 steps resumed to 6 follows
# the same learning rates as one of 6.
RECIPE = {"student": "recursive", "max_tasks": 3, "max_grid": 6, "batch_size": 4, "max_steps": 6,
          "val_tasks": 1, "val_every_steps": 3, "checkpoint_every_steps": 3, "augment": True,
          "augment_translate": 4, "task_embedding": 8, "eval_dataset": "arc1/eval",
          "eval_max_tasks": 1, "eval_demos": True}


def test_translation_draws_come_from_seed_and_step_and_shift_the_grids():
    tasks = select_tasks(load_dataset("arc1/train").tasks, max_grid=6)[:2]
    data = TrainData(all_queries(tasks), [], [])
    queries = data.train[:4]
    cpu = torch.device("cpu")
    plain = TrainConfig.from_dict({})
    shifted = TrainConfig.from_dict({"augment_translate": 6})
    for step in range(3):
        first, again = (make_batch(shifted, data, queries, step, cpu) for _ in range(2))
        assert torch.equal(first["tokens"], again["tokens"]) and torch.equal(first["target"], again["target"])
    # Each target moves down and right, padded with 0, within 30x30.
    moved = 0
    for step in range(3):
        before = make_batch(plain, data, queries, step, cpu)["target"]
        after = make_batch(shifted, data, queries, step, cpu)["target"]
        for b, a in zip(before, after):
            height, width = int((b[:, 0] != 10).sum()), int((b[0] != 10).sum())
            dy, dx = int((a[:, 0] != 10).sum()) - height, int((a[0] != 10).sum()) - width
            assert 0 <= dy <= 6 and 0 <= dx <= 6
            assert torch.equal(a[dy:dy + height, dx:dx + width], b[:height, :width])
            assert (a[:dy, :dx + width] == 0).all() and (a[:dy + height, :dx] == 0).all()
            moved += dy + dx > 0
    assert moved > 0


def test_a_run_with_translation_and_task_embedding_resumes_exactly_and_is_evaluated(workspace):
    with Store.open(workspace) as store:
        whole = store.create_run("whole", "train", RECIPE)
        halves = store.create_run("halves", "train", {**RECIPE, "max_steps": 3})
    assert run_job(workspace, whole.id, train_job) == 0
    assert run_job(workspace, halves.id, train_job) == 0

    # Resuming with data that gives other tasks is refused, saying why.
    with Store.open(workspace) as store:
        store.update_run(halves.id, config={**RECIPE, "max_tasks": 4}, status="stopped")
    assert run_job(workspace, halves.id, partial(train_job, resume=True), resumed=True) == 1
    with Store.open(workspace) as store:
        assert "task embedding rows" in store.get_run(halves.id).message
        store.update_run(halves.id, config=RECIPE, status="stopped")   # as a stop at step 3 leaves it
    assert run_job(workspace, halves.id, partial(train_job, resume=True), resumed=True) == 0
    with Store.open_readonly(workspace) as store:
        for key in ("loss", "loss_task", "grad_norm", "val_pass2"):
            assert (store.read_metrics_after(whole.id, key).values
                    == store.read_metrics_after(halves.id, key).values), key
        checkpoint = store.checkpoints(whole.id)[-1]
        run_config = store.get_run(whole.id).config
    state = load_state(workspace / checkpoint.path)

    # The checkpoint names each row's task: the training tasks and, with eval_demos, the
    # evaluation tasks whose demonstrations were trained on.
    spec = state["student"]
    train_ids = {t.id for t in select_tasks(load_dataset("arc1/train").tasks, max_grid=6)}
    eval_ids = {t.id for t in select_tasks(load_dataset("arc1/eval").tasks, max_grid=6)}
    assert spec["task_embedding"] == 8 and spec["task_ids"] == sorted(spec["task_ids"])
    demo_rows = set(spec["task_ids"]) - train_ids
    assert len(set(spec["task_ids"]) & train_ids) == 3 and demo_rows and demo_rows <= eval_ids
    assert run_config["augment_translate"] == 4 and run_config["task_embedding"] == 8
    model = build_from_spec(spec)
    model.load_state_dict(state["model"])
    assert model.task_vectors.detach().abs().sum(1).max() > 0   # rows of the tasks met moved

    # Evaluated as it is, and with test-time fine-tuning (a row of its own per task).
    for extra in ({"tta_votes": 2}, {"ttt_steps": 2, "tta_votes": 1, "workers": 1}):
        with Store.open(workspace) as store:
            run = store.create_run("eval", "eval", {"checkpoint_id": checkpoint.id, "source_run_id": whole.id,
                                                    "dataset": "arc1/eval", "max_tasks": 1, **extra})
        assert run_job(workspace, run.id, eval_job) == 0
        with Store.open_readonly(workspace) as store:
            evaluation = store.get_evaluation(store.evaluation_of_run(run.id))
            assert evaluation.n_tasks == 1, store.get_run(run.id).message
        assert ("fine-tuned per task" in evaluation.summary.get("test_time_training", "")) == ("ttt_steps" in extra)


def test_test_time_fine_tuning_trains_the_tasks_own_row_from_the_mean():
    torch.manual_seed(0)
    spec = {"kind": "standalone", "preset": "tiny", "teacher_dim": 0, "task_embedding": 4,
            "task_ids": ["a", "b"]}
    model = build_from_spec(spec)
    with torch.no_grad():
        model.task_vectors.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    rng = np.random.default_rng(0)
    grids = [rng.integers(0, 3, (3, 3)).astype(np.uint8) for _ in range(3)]
    task = ArcTask("task", tuple(Pair(g, (g > 0).astype(np.uint8) * 4) for g in grids), ())
    losses = fine_tune(model, task, {"max_demos": 3, "augment_translate": 2}, 3, rng, lambda: False)
    assert len(losses) == 3 and model.task_ids == ["a", "b", "task"]
    row = model.task_vectors.detach()[2]
    assert not torch.allclose(row, torch.tensor([0.5, 0.5, 0, 0]))   # it started at the mean and moved
    assert (row - torch.tensor([0.5, 0.5, 0, 0])).abs().max() < 0.1   # by a few small steps
