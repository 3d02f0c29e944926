"""The rule-student bench: its outcomes per task, scored by the learning bench's scorer,
and the list of tasks that changed since a saved run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("rule_student", ROOT / "bench" / "rule_student.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rotation_task(rng, test_output=None):
    grids = [rng.integers(0, 10, size=(4, 4)) for _ in range(4)]
    pairs = [{"input": g.tolist(), "output": np.rot90(g).tolist()} for g in grids]
    if test_output is not None:
        pairs[-1]["output"] = test_output
    return {"train": pairs[:3], "test": pairs[3:]}


def test_a_tree_that_explains_the_demonstrations_is_scored_on_the_test_output():
    bench = load_bench()
    rng = np.random.default_rng(0)
    tasks = {"rotate": rotation_task(rng), "rotate_wrong": rotation_task(rng, test_output=[[1]])}
    outcomes, submission = bench.task_outcomes(tasks)
    assert outcomes["rotate"] == {"found": True, "confident": True, "right": [True],
                                  "words": outcomes["rotate"]["words"], "grids": [tasks["rotate"]["test"][0]["output"]]}
    assert outcomes["rotate_wrong"]["found"] and outcomes["rotate_wrong"]["right"] == [False]
    pass2, pass1, solved = bench.official_score(submission, tasks)
    assert (pass2, pass1, solved) == (0.5, 0.5, 1)
    assert "a tree answers 2 of 2 tasks, 1 right; confident in 2, 1 of them right; found but wrong in 1" \
        == bench.summary(outcomes)


def test_the_tasks_whose_outcome_changed_are_listed(tmp_path, capsys):
    bench = load_bench()
    before = {"a": {"found": False, "confident": False, "right": None, "grids": None},
              "b": {"found": True, "confident": True, "right": [True], "grids": [[[1]]]},
              "c": {"found": True, "confident": False, "right": [False], "grids": [[[2]]]},
              "d": {"found": True, "confident": False, "right": [False], "grids": [[[3]]]}}
    after = {"a": {"found": True, "confident": True, "right": [True], "grids": [[[1]]]},
             "b": {"found": True, "confident": False, "right": [True], "grids": [[[1]]]},
             "c": {"found": True, "confident": False, "right": [False], "grids": [[[5]]]},
             "d": {"found": True, "confident": False, "right": [False], "grids": [[[3]]]}}
    assert bench.changes(before, after) == ["a: no tree -> right, confident", "b: right, confident -> right",
                                            "c: wrong, another grid"]
    broken = tmp_path / "before.json"
    broken.write_text("not json")
    assert bench.main(["--compare", str(broken)]) == 2
    assert "give a file written by --save" in capsys.readouterr().err
