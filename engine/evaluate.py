"""The evaluation job: predict every test input of a dataset with a checkpoint, store
attempts, expected outputs and per-task scores, and report the official score."""

from __future__ import annotations

import logging

import torch

from db.lifecycle import uses_test_time_training
from db.store import Evaluation, Prediction
from engine.arc import load_dataset, select_tasks
from engine.checkpoints import load_state
from engine.config import TrainConfig
from engine.integrity import evaluation_summary
from engine.predict import EvalResult, evaluate_queries, pick_device
from engine.runner import JobFailed, RunContext
from engine.student import build_from_spec

log = logging.getLogger("engine")


def load_student(state: dict, device: torch.device):
    model = build_from_spec(state["student"])
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def eval_job(ctx: RunContext) -> str:
    settings = ctx.config
    if uses_test_time_training(settings):
        from engine.ttt import ttt_job
        return ttt_job(ctx)
    checkpoint = ctx.store.get_checkpoint(settings["checkpoint_id"])
    state = load_state(ctx.absolute(checkpoint.path))
    train_cfg = TrainConfig.from_dict(state["config"])
    device = pick_device(settings.get("device") or "auto")
    ctx.store.update_run(ctx.run_id, device=str(device))   # what is used, not "auto"
    model = load_student(state, device)
    dataset = load_dataset(settings.get("dataset") or "arc1/eval")
    for problem in dataset.problems:
        ctx.event("bad_task", f"skipped task {problem}")
    tasks = select_tasks(dataset.tasks, settings.get("task_ids"), settings.get("max_tasks"),
                         settings.get("max_grid"))
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
    summary = evaluation_summary(result, tasks, state["config"])
    demonstrations = {t.id: t.to_dict()["train"] for t in tasks}
    evaluation_id = store_result(ctx, result, checkpoint.run_id, checkpoint.id, dataset.name,
                                 demonstrations, summary)
    # The figures and their baseline (eval_baseline_*: the reference line of each curve).
    ctx.log_metrics(0, {f"eval_{k}": v for k, v in summary.items()
                        if isinstance(v, float) and not k.startswith("copy_input_")})
    message = evaluation_message(ctx.store.get_evaluation(evaluation_id), dataset.name)
    ctx.event("evaluation", message, {"evaluation_id": evaluation_id})
    print(message, flush=True)
    return "finished"


def evaluation_message(evaluation: Evaluation, dataset: str) -> str:
    """The line `sage-engine eval` prints: the score, its baseline, and what it is without
    the tasks the checkpoint trained on."""
    s = evaluation.summary
    pass2 = ("pass@2" if s.get("attempts_per_input", 2) >= 2
             else "pass@2 (one attempt only: a pass@1)")
    message = (f"evaluation {evaluation.id}: {pass2} {evaluation.score_pass2:.4f}, pass@1 "
               f"{evaluation.score_pass1:.4f}, cell accuracy {s.get('cell_acc', float('nan')):.3f} "
               f"over {evaluation.n_tasks} tasks ({evaluation.n_test_inputs} test inputs) of "
               f"{dataset}{', with test-time training' if s.get('test_time_training') else ''} — "
               f"official ARC rule: mean over tasks of the fraction of test inputs solved")
    if "baseline_pass2" in s:
        message += (f"; no-learning baseline: pass@2 {s['baseline_pass2']:.4f}, cell accuracy "
                    f"{s['baseline_cell_acc']:.3f}")
    overlap = s.get("overlap") or {}
    if evaluation.overlapping_tasks:
        unseen = evaluation.score_unseen
        count = len(evaluation.overlapping_tasks)
        message += (f"; WARNING {count} of these tasks {'overlaps' if count == 1 else 'overlap'} "
                    f"the checkpoint's training data ({overlap['trained_on']}): without "
                    f"{'it' if count == 1 else 'them'} "
                    + (f"pass@2 {unseen:.4f} over {s['without_overlap']['n_tasks']} tasks"
                       if unseen is not None else "no task is left to score"))
    elif overlap and not evaluation.overlap_checked:
        message += f"; overlap with the training data not checked ({overlap['reason']})"
    return message


def store_result(ctx: RunContext, result: EvalResult, source_run_id: int, checkpoint_id: int,
                 dataset: str, demonstrations: dict[str, list[dict]], summary: dict) -> int:
    predictions = []
    for p in result.predictions:
        attempts = [a.tolist() for a in p.attempts]
        predictions.append(Prediction(
            0, p.task_id, p.test_index, p.test_input.tolist(),
            p.expected.tolist() if p.expected is not None else None,
            attempts[0], attempts[1] if len(attempts) > 1 else None,
            p.correct(0), p.correct(1), p.cell_accuracy(0), p.cell_accuracy(1)))
    return ctx.store.add_evaluation(ctx.run_id, source_run_id, checkpoint_id, dataset,
                                    predictions, result.score().tasks, summary, demonstrations)
