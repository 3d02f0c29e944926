"""The evaluation job: predict every test input of a dataset with a checkpoint, store
attempts, expected outputs and per-task scores, and report the official score."""

from __future__ import annotations

import logging

import torch

from db.store import Prediction, TaskScore
from engine.arc import load_dataset, select_tasks
from engine.checkpoints import load_state
from engine.config import TrainConfig
from engine.predict import EvalResult, evaluate_queries, pick_device
from engine.runner import JobFailed, RunContext
from engine.student import build_student

log = logging.getLogger("engine")


def load_student(state: dict, device: torch.device):
    spec = state["student"]
    model = build_student(spec["kind"], spec["preset"], teacher_dim=spec["teacher_dim"])
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def eval_job(ctx: RunContext) -> str:
    settings = ctx.config
    checkpoint = ctx.store.get_checkpoint(settings["checkpoint_id"])
    state = load_state(ctx.absolute(checkpoint.path))
    train_cfg = TrainConfig.from_dict(state["config"])
    device = pick_device(settings.get("device") or "auto")
    model = load_student(state, device)
    dataset = load_dataset(settings.get("dataset") or "arc1/eval")
    for problem in dataset.problems:
        ctx.event("bad_task", f"skipped task {problem}")
    tasks = select_tasks(dataset.tasks, max_tasks=settings.get("max_tasks"))
    if not tasks:
        raise JobFailed(f"no tasks to evaluate in {dataset.name}")
    features = None
    if state["student"]["kind"] == "sage-seed":
        if not settings.get("features"):
            raise JobFailed("this checkpoint's student reads teacher features: extract features "
                            "for the evaluation dataset and pass them with features=<store>")
        from engine.features import open_store_for_training
        features = open_store_for_training(ctx.workspace, settings["features"], dataset)
    votes = settings.get("tta_votes") or 0
    ctx.event("eval", f"evaluating checkpoint {checkpoint.id} (run {checkpoint.run_id}, step "
                      f"{checkpoint.step}) on {len(tasks)} tasks of {dataset.name}, "
                      f"{max(1, votes)} view(s) per test input")
    ctx.set_progress(total_steps=max(1, votes), step=0, progress=0.0)

    def progress(done: int, total: int) -> None:
        ctx.set_progress(step=done, total_steps=total, progress=done / total)
        if ctx.should_stop:
            from engine.runner import StopRequested
            raise StopRequested()

    result = evaluate_queries(model, tasks, train_cfg, device, features, tta_votes=votes,
                              on_progress=progress)
    demonstrations = {t.id: t.to_dict()["train"] for t in tasks}
    evaluation_id = store_result(ctx, result, checkpoint.run_id, checkpoint.id, dataset.name,
                                 demonstrations)
    summary = ctx.store.get_evaluation(evaluation_id)
    ctx.log_metrics(0, {f"eval_{k}": v for k, v in result.summary().items()})
    message = (f"evaluation {evaluation_id}: pass@2 {summary.score_pass2:.4f}, pass@1 "
               f"{summary.score_pass1:.4f} over {summary.n_tasks} tasks ({summary.n_test_inputs} test "
               f"inputs) of {dataset.name} — official ARC rule: mean over tasks of the fraction "
               f"of test inputs solved")
    ctx.event("evaluation", message, {"evaluation_id": evaluation_id})
    print(message, flush=True)
    return "finished"


def store_result(ctx: RunContext, result: EvalResult, source_run_id: int, checkpoint_id: int,
                 dataset: str, demonstrations: dict[str, list[dict]]) -> int:
    predictions, by_task = [], {}
    for p in result.predictions:
        attempts = [a.tolist() for a in p.attempts]
        predictions.append(Prediction(
            0, p.task_id, p.test_index, p.test_input.tolist(),
            p.expected.tolist() if p.expected is not None else None,
            attempts[0], attempts[1] if len(attempts) > 1 else None,
            p.correct(0), p.correct(1), p.cell_accuracy(0), p.cell_accuracy(1)))
        by_task.setdefault(p.task_id, []).append(p)
    task_scores = []
    for task_id, items in sorted(by_task.items()):
        solved1 = sum(p.correct(0) for p in items)
        solved2 = sum(p.correct(0) or p.correct(1) for p in items)
        task_scores.append(TaskScore(0, task_id, len(items), solved1, solved2, solved2 / len(items)))
    summary = result.summary()
    return ctx.store.add_evaluation(ctx.run_id, source_run_id, checkpoint_id, dataset,
                                    predictions, task_scores, summary, demonstrations)
