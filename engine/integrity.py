"""What keeps a score honest, without torch: contamination between the tasks a run
trained on and the tasks it is scored on (found by content, not by id), the
no-learning baselines every score is shown beside, and the queries a model can answer
without learning anything.

`sage-engine check`, the training job and the evaluation job all call these, so the
form, the run's events and every stored evaluation say the same thing.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter

import numpy as np

from engine.arc import ArcTask, Pair, load_dataset, query_view, select_tasks
from engine.scoring import FIGURES, EvalResult, TestPrediction


# ---------------------------------------------------------------- fingerprints
def _grid_bytes(grid: np.ndarray | None) -> bytes:
    if grid is None:
        return b"-"
    grid = np.asarray(grid, dtype=np.uint8)
    return f"{grid.shape[0]}x{grid.shape[1]}:".encode() + grid.tobytes()


def pair_fingerprint(pair: Pair) -> str:
    """A pair's content (input and output grids, shapes included), ids ignored."""
    return hashlib.sha256(_grid_bytes(pair.input) + b"|" + _grid_bytes(pair.output)).hexdigest()[:20]


def task_fingerprint(task: ArcTask) -> str:
    """A task's content: its demonstration and test pairs in order, id ignored."""
    digest = hashlib.sha256()
    for kind in ("train", "test"):
        digest.update(kind.encode())
        for pair in task.pairs(kind):
            digest.update(pair_fingerprint(pair).encode())
    return digest.hexdigest()[:20]


def find_overlap(training: list[ArcTask], scored: list[ArcTask]) -> list[str]:
    """Ids of the ``scored`` tasks that share a pair (input and output) with a training
    task: the model has seen that task's rule, and often its very answer. Content
    decides, not ids: a renamed copy is caught, an unrelated task of the same name is not."""
    seen = {pair_fingerprint(p) for task in training for p in task.train + task.test
            if p.output is not None}
    return [task.id for task in scored
            if any(pair_fingerprint(p) in seen for p in task.train + task.test if p.output is not None)]


def split_run_tasks(tasks: list[ArcTask], task_ids: list[str] | None, max_tasks: int | None,
                    max_grid: int | None, val_tasks: int, seed: int
                    ) -> tuple[list[ArcTask], list[ArcTask]]:
    """The tasks a training run selects, split by task (never by example) into
    (trained on, held out for validation) with the run's seed."""
    tasks = select_tasks(tasks, task_ids or None, max_grid=max_grid)
    if max_tasks is not None:
        tasks = tasks[: max_tasks + val_tasks]
    order = list(range(len(tasks)))
    random.Random(seed).shuffle(order)
    val = [tasks[i] for i in sorted(order[:val_tasks])]
    train = [tasks[i] for i in sorted(order[val_tasks:])]
    return train, val


def trained_tasks(config: dict) -> list[ArcTask]:
    """The tasks a run with these training settings trains on (loads its dataset)."""
    from engine.config import TrainConfig

    cfg = TrainConfig.from_dict(config)
    dataset = load_dataset(cfg.dataset)
    return split_run_tasks(dataset.tasks, cfg.task_ids, cfg.max_tasks, cfg.max_grid,
                           cfg.val_tasks, cfg.seed)[0]


def overlap_message(training_name: str, overlap: list[str], scored_name: str, scored_count: int) -> str:
    return (f"{len(overlap)} of the {scored_count} {scored_name} tasks share pairs (answers "
            f"included) with the tasks trained on from {training_name}: scores on them measure "
            f"memory, not reasoning")


def contamination_warnings(config: dict) -> list[str]:
    """Warnings for training settings whose evaluation set overlaps the training tasks
    (for `sage-engine check` and the new-run form). A dataset that cannot be loaded
    gives no warning here: the settings check reports it."""
    from engine.config import TrainConfig
    from engine.errors import UserError

    cfg = TrainConfig.from_dict(config)
    if not cfg.eval_dataset:
        return []
    try:
        training = trained_tasks(config)
        evaluation = load_dataset(cfg.eval_dataset).tasks
    except (UserError, OSError, ValueError):
        return []
    overlap = find_overlap(training, evaluation)
    if not overlap:
        return []
    validated_on = select_tasks(evaluation, max_tasks=cfg.eval_max_tasks)
    in_run = len(set(overlap) & {t.id for t in validated_on})
    return [overlap_message(cfg.dataset, overlap, cfg.eval_dataset, len(evaluation))
            + f" ({in_run} of the {len(validated_on)} this run validates on); every evaluation "
              f"also reports its score without them"]


# ------------------------------------------------------------------- baselines
def no_learning_answer(task: ArcTask, index: int) -> np.ndarray:
    """What a rule that learns nothing answers for test input ``index``: the input
    itself when every demonstration keeps its shape, else zeros of the demonstrations'
    (most common) output shape."""
    test_input = task.test[index].input
    if all(p.input.shape == p.output.shape for p in task.train):
        return test_input
    shape = Counter(p.output.shape for p in task.train).most_common(1)[0][0]
    return np.zeros(shape, dtype=np.uint8)


BASELINES = {
    "baseline": no_learning_answer,                          # the reference line on curves
    "copy_input": lambda task, index: task.test[index].input,
}


def baseline_figures(tasks: list[ArcTask]) -> dict[str, float]:
    """Each baseline's figures on these tasks' test inputs, scored by the same
    ``EvalResult.summary`` as a model: keys ``<baseline>_<figure>`` (``baseline_cell_acc``,
    ``copy_input_pass2``, ...). A baseline answers once, so its pass2 is its pass1."""
    figures = {}
    for name, answer in BASELINES.items():
        result = EvalResult([TestPrediction(t.id, i, p.input, p.output, [answer(t, i)])
                             for t in tasks for i, p in enumerate(t.test)])
        summary = result.summary()
        figures.update({f"{name}_{k}": summary[k] for k in FIGURES if k in summary})
    return figures


# ----------------------------------------------------------- trivial queries
def trivially_solvable(queries: list[tuple[ArcTask, str, int]], max_demos: int | None
                       ) -> dict[str, int]:
    """Queries whose answer needs no learning: ``answer_in_demos``, the expected output
    appears verbatim among the demonstration grids the model sees; ``answer_is_input``,
    it equals the query's input. ``queries``: how many had a known answer."""
    counts = {"queries": 0, "answer_in_demos": 0, "answer_is_input": 0}
    for task, kind, index in queries:
        answer = task.pairs(kind)[index].output
        if answer is None:
            continue
        demos, query_input = query_view(task, kind, index, max_demos)
        key = _grid_bytes(answer)
        counts["queries"] += 1
        counts["answer_in_demos"] += any(key in (_grid_bytes(d.input), _grid_bytes(d.output))
                                         for d in demos)
        counts["answer_is_input"] += key == _grid_bytes(query_input)
    return counts


# ------------------------------------------------------------ one evaluation
def evaluation_summary(result: EvalResult, tasks: list[ArcTask], training_config: dict | None
                       ) -> dict:
    """Everything stored beside an evaluation's score: its figures, how many distinct
    attempts each test input had (1 means its pass2 is a pass@1), the baselines on the
    same tasks, and the tasks the checkpoint's training data overlaps (by content) with
    the figures recomputed without them."""
    summary: dict = {**result.summary(), "attempts_per_input": result.attempts_per_input,
                     **baseline_figures(tasks)}
    if training_config is None:
        return summary
    if training_config.get("eval_demos"):
        summary["transductive"] = (f"the student trained on the demonstration pairs of "
                                   f"{training_config.get('eval_dataset')} (never their test outputs)")
    try:
        training = trained_tasks(training_config)
    except Exception as exc:  # the training data moved: say so, never guess
        summary["overlap"] = {"checked": False, "reason": f"training tasks unavailable: {exc}"}
        return summary
    overlap = find_overlap(training, tasks)
    summary["overlap"] = {"checked": True, "trained_on": training_config.get("dataset"),
                          "task_ids": overlap}
    if overlap:
        clean = result.without(set(overlap))
        summary["without_overlap"] = {"n_tasks": len({p.task_id for p in clean.predictions}),
                                      **clean.summary()}
    return summary
