"""Training as a run: metric rows, checkpoints, events, final status."""

from __future__ import annotations

import math

import pytest
import torch

from db.store import Store
from engine.checkpoints import load_state
from engine.runner import run_job
from engine.train import train_job


def _train(workspace, config, job=train_job) -> tuple[int, int]:
    with Store.open(workspace) as store:
        run = store.create_run("t", "train", config)
    return run.id, run_job(workspace, run.id, job)


def test_a_few_steps_log_metrics_checkpoints_and_finish(workspace, fast_train_config):
    run_id, code = _train(workspace, fast_train_config)
    assert code == 0
    with Store.open_readonly(workspace) as store:
        run = store.get_run(run_id)
        assert (run.status, run.step, run.total_steps, run.progress) == ("finished", 6, 6, 1.0)
        for key in ("loss", "loss_task", "cell_acc", "fg_acc", "exact", "lr", "grad_norm", "examples_per_s"):
            chunk = store.read_metrics_after(run_id, key)
            assert chunk.steps == [1, 2, 3, 4, 5, 6], key
            assert all(math.isfinite(v) for v in chunk.values if key != "fg_acc"), key
        assert all(0.0 <= v <= 1.0 for v in store.read_metrics_after(run_id, "cell_acc").values)
        # Warmup then cosine decay: the learning rate rises, then falls.
        lrs = store.read_metrics_after(run_id, "lr").values
        assert lrs[0] < lrs[1] and lrs[-1] < max(lrs)
        assert store.read_metrics_after(run_id, "val_pass2").steps == [3, 6]
        assert store.read_metrics_after(run_id, "val_colour0_acc").steps == [3, 6]
        checkpoints = store.checkpoints(run_id)
        assert [c.step for c in checkpoints] == [3, 6]
        assert checkpoints[-1].reason == "final" and "val_pass2" in checkpoints[-1].metrics
        kinds = [e.kind for e in store.events(run_id)]
        assert kinds[0] == "started" and kinds[-1] == "finished" and "checkpoint" in kinds
        state = load_state(workspace / checkpoints[-1].path)  # weights_only=True inside
    assert set(state) >= {"model", "optimizer", "scheduler", "scaler", "rng", "step", "epoch",
                          "batch_in_epoch", "config"}
    assert state["step"] == 6


def test_config_error_fails_the_run_with_a_message(workspace):
    run_id, code = _train(workspace, {"lr": "fast"})
    assert code == 1
    with Store.open_readonly(workspace) as store:
        run = store.get_run(run_id)
    assert run.status == "failed" and "lr: expected float" in run.message


def test_an_unexpected_exception_fails_the_run_with_traceback_and_event(workspace, fast_train_config):
    def broken_job(ctx):
        raise ZeroDivisionError("boom")

    run_id, code = _train(workspace, fast_train_config, broken_job)
    assert code == 1
    with Store.open_readonly(workspace) as store:
        run = store.get_run(run_id)
        errors = [e for e in store.events(run_id) if e.kind == "error"]
    assert run.status == "failed" and "ZeroDivisionError: boom" in run.message
    assert "Traceback" in errors[0].data["traceback"]
    assert "ZeroDivisionError: boom" in (workspace / run.log_path).read_text()


def test_cuda_out_of_memory_is_caught_with_figures_hint_and_checkpoint(workspace, fast_train_config, monkeypatch):
    """STAND-IN: no GPU here, so the student's forward raises torch.OutOfMemoryError at
    the fourth call, as CUDA would. Everything around it is real."""
    import engine.train as train_module

    real_build = train_module.build_student

    def build_that_runs_out_of_memory(*args, **kwargs):
        model = real_build(*args, **kwargs)
        forward = model.forward
        calls = {"n": 0}

        def forward_or_oom(batch):
            calls["n"] += 1
            if calls["n"] == 4 and model.training:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 6.36 GiB (stand-in)")
            return forward(batch)

        model.forward = forward_or_oom
        return model

    monkeypatch.setattr(train_module, "build_student", build_that_runs_out_of_memory)
    config = {**fast_train_config, "val_every_steps": 100}
    run_id, code = _train(workspace, config)
    assert code == 1
    with Store.open_readonly(workspace) as store:
        run = store.get_run(run_id)
        oom = [e for e in store.events(run_id) if e.kind == "oom"]
        checkpoints = store.checkpoints(run_id)
    assert run.status == "failed"
    assert "batch_size=4" in run.message and "grad_accum" in run.message
    assert oom and oom[0].data["batch_size"] == 4 and oom[0].data["step"] == 3
    assert checkpoints[-1].reason == "oom" and checkpoints[-1].step == 3


@pytest.mark.parametrize("loss", ["weighted", "focal"])
def test_other_task_losses_train(workspace, fast_train_config, loss):
    run_id, code = _train(workspace, {**fast_train_config, "loss": loss, "max_steps": 2, "val_tasks": 0})
    assert code == 0
    with Store.open_readonly(workspace) as store:
        assert len(store.read_metrics_after(run_id, "loss").steps) == 2


def test_transductive_training_uses_evaluation_demonstrations_and_says_so(workspace, fast_train_config):
    from engine.arc import load_dataset, select_tasks
    from engine.evaluate import eval_job

    config = {**fast_train_config, "max_steps": 2, "eval_dataset": "arc1/eval", "eval_max_tasks": 1,
              "eval_demos": True, "val_tasks": 0}
    with Store.open(workspace) as store:
        run = store.create_run("t", "train", config)
    assert run_job(workspace, run.id, train_job) == 0
    demo_tasks = select_tasks(load_dataset("arc1/eval").tasks, max_grid=config["max_grid"])
    with Store.open_readonly(workspace) as store:
        messages = [e.message for e in store.events(run.id) if e.kind == "data"]
        checkpoint = store.checkpoints(run.id)[-1]
    assert any(f"demonstration pairs of {len(demo_tasks)} tasks of arc1/eval" in m for m in messages)
    trained = select_tasks(load_dataset("arc1/train").tasks, max_grid=config["max_grid"])[:config["max_tasks"]]
    queries = sum(len(t.train) + len(t.test) for t in trained) + sum(len(t.train) for t in demo_tasks)
    assert any(f"({queries} queries)" in m for m in messages)
    with Store.open(workspace) as store:
        evaluation_run = store.create_run("e", "eval", {"checkpoint_id": checkpoint.id, "source_run_id": run.id,
                                                        "dataset": "arc1/eval", "max_tasks": 1})
    assert run_job(workspace, evaluation_run.id, eval_job) == 0
    with Store.open_readonly(workspace) as store:
        [evaluation] = store.evaluations(run_id=evaluation_run.id)
    assert "demonstration pairs of arc1/eval" in evaluation.summary["transductive"]
