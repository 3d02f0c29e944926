"""Contamination by content, no-learning baselines and trivially solvable queries."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.arc import ArcTask, Pair, all_queries, load_dataset
from engine.integrity import (baseline_figures, contamination_warnings, find_overlap,
                              no_learning_answer, trivially_solvable)


def g(rows):
    return np.asarray(rows, dtype=np.uint8)


def task(task_id, train, test):
    return ArcTask(task_id, tuple(Pair(g(i), g(o)) for i, o in train),
                   tuple(Pair(g(i), g(o)) for i, o in test))


SAME_SHAPE = task("same", [([[1, 0]], [[0, 1]]), ([[2, 2]], [[2, 2]])], [([[3, 0]], [[0, 3]])])
NEW_SHAPE = task("grow", [([[1]], [[1, 1], [1, 1]]), ([[2]], [[2, 2], [2, 2]])], [([[5]], [[5, 5], [5, 5]])])


def test_overlap_is_found_by_content_not_by_id():
    renamed = replace(SAME_SHAPE, id="renamed")
    unrelated_same_name = replace(NEW_SHAPE, id="same")
    # The training copy of a task with one extra demonstration still shares its pairs.
    grown = replace(NEW_SHAPE, id="other", train=NEW_SHAPE.train + (Pair(g([[7]]), g([[7, 7], [7, 7]])),))
    assert find_overlap([renamed], [SAME_SHAPE, NEW_SHAPE]) == ["same"]
    assert find_overlap([unrelated_same_name], [SAME_SHAPE]) == []
    assert find_overlap([grown], [SAME_SHAPE, NEW_SHAPE]) == ["grow"]
    # One changed cell in every pair is a different task.
    changed = replace(SAME_SHAPE, train=tuple(Pair(p.input, 9 - p.output) for p in SAME_SHAPE.train),
                      test=tuple(Pair(p.input, 9 - p.output) for p in SAME_SHAPE.test))
    assert find_overlap([changed], [SAME_SHAPE]) == []


def test_arc2_train_holds_most_arc1_evaluation_tasks():
    arc2_train = load_dataset("arc2/train").tasks
    arc1_eval = load_dataset("arc1/eval").tasks
    assert len(find_overlap(arc2_train, arc1_eval)) == 376
    # ARC-AGI-1 itself repeats one task: evaluation 070dd51e has the pairs of training 40853293.
    assert find_overlap(load_dataset("arc1/train").tasks, arc1_eval) == ["070dd51e"]


def test_contamination_warning_is_about_the_tasks_the_run_trains_on():
    everything = {"dataset": "arc2/train", "max_tasks": None, "max_grid": None, "eval_dataset": "arc1/eval"}
    [warning] = contamination_warnings(everything)
    assert warning.startswith("376 of the 400 arc1/eval tasks") and "(18 of the 20 this run" in warning
    assert contamination_warnings({**everything, "eval_dataset": None}) == []
    assert contamination_warnings({**everything, "dataset": "arc1/train"})[0].startswith("1 of the 400")
    assert contamination_warnings({**everything, "dataset": "arc1/train", "max_grid": 10}) == []
    # A dataset that cannot be loaded is the settings check's to report, not a warning.
    assert contamination_warnings({**everything, "eval_dataset": "/no/such/folder"}) == []


def test_no_learning_answer_copies_the_input_or_draws_zeros_of_the_output_shape():
    assert np.array_equal(no_learning_answer(SAME_SHAPE, 0), g([[3, 0]]))
    assert np.array_equal(no_learning_answer(NEW_SHAPE, 0), np.zeros((2, 2), np.uint8))


def test_baselines_are_scored_like_a_model():
    figures = baseline_figures([SAME_SHAPE, NEW_SHAPE])
    # same: the input [[3, 0]] against [[0, 3]]: 0 of 2 cells, right shape.
    # grow: zeros 2x2 against fives: 0 of 4 cells, right shape; copy-input: 1x1, 0 of 4.
    assert figures["baseline_cell_acc"] == 0.0 and figures["baseline_shape_acc"] == 1.0
    assert figures["copy_input_shape_acc"] == 0.5
    assert figures["baseline_pass2"] == figures["baseline_pass1"] == 0.0
    identity = task("id", [([[1, 2]], [[1, 2]])], [([[4, 4]], [[4, 4]])])
    assert baseline_figures([identity])["baseline_pass2"] == 1.0
    assert baseline_figures([identity, NEW_SHAPE])["baseline_pass2"] == 0.5   # mean over tasks


def test_trivially_solvable_queries_are_counted_with_the_demonstrations_seen():
    repeat = task("rep", [([[1]], [[2]]), ([[3]], [[2]]), ([[4]], [[4]])], [([[5]], [[4]])])
    counts = trivially_solvable(all_queries([repeat]), max_demos=None)
    # train 0 and 1 answer [[2]], each shown by the other; train 2 answers its own input;
    # the test answer [[4]] is train 2's output.
    assert counts == {"queries": 4, "answer_in_demos": 3, "answer_is_input": 1}
    # Seeing one demonstration, the test query sees train 0 only: no longer trivial.
    assert trivially_solvable(all_queries([repeat]), max_demos=1)["answer_in_demos"] == 2
    arc1 = trivially_solvable(all_queries(load_dataset("arc1/train").tasks), max_demos=2)
    assert arc1["queries"] == 1718 and arc1["answer_is_input"] == 5
    # The audit's 39 answers among the demonstration outputs the teacher sees, plus one
    # equal to a demonstration input.
    assert arc1["answer_in_demos"] == 40
