"""The checkpoints screen: the list with its best marker, evaluate, resume from, delete
(confirmed), and the evaluations made from a run's checkpoints."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input

from db.store import Prediction, Store, TaskScore
from sage_tui import control
from sage_tui.screens.checkpoints import CheckpointsScreen, EvaluateScreen
from sage_tui.screens.compare import CompareScreen
from sage_tui.screens.confirm import ConfirmScreen
from sage_tui.screens.tasks import TasksScreen

from tests.tui.helpers import ScreenApp, run_ids, run_status, stop_all_engines, wait_for, wait_until



@pytest.fixture
def run_with_checkpoints(workspace):
    """A stopped training run with three checkpoint files; steps 200 and 300 tie on
    val_pass2, so the later one is the best. Two evaluations, of steps 100 and 300."""
    with Store.open(workspace) as store:
        run = store.create_run("demo", "train", {"eval_dataset": "arc1/train", "eval_max_tasks": 5},
                               status="stopped")
        ids = []
        for step, score in ((100, 0.1), (200, 0.3), (300, 0.3)):
            path = f"runs/{run.id:04d}/checkpoints/step_{step:08d}.pt"
            (workspace / path).parent.mkdir(parents=True, exist_ok=True)
            (workspace / path).write_bytes(b"x" * 2048)
            ids.append(store.add_checkpoint(run.id, step, step / 100, path, 2048,
                                            {"val_pass2": score, "val_pass1": score / 2}, "periodic"))
        evaluations = []
        for checkpoint_id, solved in ((ids[0], 0), (ids[2], 1)):
            eval_run = store.create_run("eval", "eval", {}, status="finished")
            grid = [[1]]
            evaluations.append(store.add_evaluation(
                eval_run.id, run.id, checkpoint_id, "arc1/train",
                [Prediction(0, "t1", 0, grid, grid, grid if solved else [[2]], None, bool(solved), False,
                            1.0 if solved else 0.0, None)],
                [TaskScore(0, "t1", 1, solved, solved, float(solved))], {}))
    return run.id, ids, evaluations


def keys(table: DataTable) -> list[str]:
    return [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]


async def loaded(pilot, screen) -> None:
    await wait_until(pilot, lambda: screen.view is not None, timeout=10, what="the checkpoints")
    await pilot.pause()


async def test_lists_checkpoints_with_the_best_marked(workspace, run_with_checkpoints):
    run_id, ids, evaluations = run_with_checkpoints
    app = ScreenApp(workspace, lambda: CheckpointsScreen(run_id))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await loaded(pilot, screen)
        table = screen.query_one("#checkpoints-table", DataTable)
        assert keys(table) == [str(i) for i in ids]
        # A tie goes to the earlier step, which reached the same figures first.
        assert [table.get_cell(str(i), "best") for i in ids] == ["", "★", ""]
        assert table.get_cell(str(ids[1]), "pass2") == "0.300"
        assert table.get_cell(str(ids[0]), "size") == "2.0 KiB"
        assert keys(screen.query_one("#evaluations-table", DataTable)) == [str(e) for e in evaluations]
    assert not app.errors


async def test_star_sits_on_a_validated_checkpoint_and_unvalidated_ones_say_so(workspace):
    """A stop between two validations leaves a checkpoint with no figures of its own:
    it is listed as not validated and never gets the star, even as the latest; when no
    checkpoint solved anything the summary says so, with the baseline."""
    with Store.open(workspace) as store:
        run = store.create_run("demo", "train", {}, status="stopped")
        validated = {"val_pass2": 0.0, "val_pass1": 0.0, "val_cell_acc": 0.41,
                     "val_baseline_cell_acc": 0.55}
        ids = [store.add_checkpoint(run.id, 300, 3.0, "a.pt", 10, validated, "periodic"),
               store.add_checkpoint(run.id, 449, 4.5, "b.pt", 10, {}, "stop")]
        eval_run = store.create_run("eval", "eval", {}, status="finished")
        grid = [[1]]
        summary = {"cell_acc": 0.5, "baseline_cell_acc": 0.62, "baseline_pass2": 0.0,
                   "attempts_per_input": 1,
                   "overlap": {"checked": True, "trained_on": "arc2/train", "task_ids": ["t1"]},
                   "without_overlap": {"n_tasks": 1, "pass2": 0.0}}
        store.add_evaluation(eval_run.id, run.id, ids[0], "arc1/eval",
                             [Prediction(0, t, 0, grid, grid, grid if t == "t1" else [[2]], None,
                                         t == "t1", t == "t1", 1.0 if t == "t1" else 0.0, None)
                              for t in ("t1", "t2")],
                             [TaskScore(0, "t1", 1, 1, 1, 1.0), TaskScore(0, "t2", 1, 0, 0, 0.0)], summary)
    app = ScreenApp(workspace, lambda: CheckpointsScreen(run.id))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await loaded(pilot, screen)
        table = screen.query_one("#checkpoints-table", DataTable)
        assert [table.get_cell(str(i), "best") for i in ids] == ["★", ""]
        assert table.get_cell(str(ids[1]), "pass2") == "-"
        summary_text = str(screen.query_one("#checkpoints-summary").render())
        assert "no checkpoint solved any validation task" in summary_text
        assert "baseline 0.550" in summary_text
        assert "not validated (no figures of their own): step 449" in summary_text
        evaluations = screen.query_one("#evaluations-table", DataTable)
        [key] = keys(evaluations)
        # pass@2 of one attempt is flagged; beside it the score without the trained-on task
        # and the cell accuracy beside the no-learning baseline's.
        assert evaluations.get_cell(key, "pass2") == "0.500*"
        assert evaluations.get_cell(key, "unseen") == "0.000!"
        assert (evaluations.get_cell(key, "cells"), evaluations.get_cell(key, "base")) == ("50%", "62%")
    assert not app.errors


async def test_delete_asks_first_then_removes_file_and_row(workspace, run_with_checkpoints):
    run_id, ids, _ = run_with_checkpoints
    with Store.open_readonly(workspace) as store:
        first = store.get_checkpoint(ids[0])
    app = ScreenApp(workspace, lambda: CheckpointsScreen(run_id))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await loaded(pilot, screen)
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert app.screen is screen
        await pilot.pause(0.3)
        assert (workspace / first.path).exists()

        await pilot.press("d", "y")
        table = screen.query_one("#checkpoints-table", DataTable)
        await wait_until(pilot, lambda: str(ids[0]) not in keys(table), timeout=10, what="the row to go")
        assert not (workspace / first.path).exists()
        with Store.open_readonly(workspace) as store:
            assert [c.id for c in store.checkpoints(run_id)] == ids[1:]
    assert not app.errors


@pytest.fixture
def launched(monkeypatch) -> list:
    """Engine launches recorded instead of started: (log path, arguments) of each."""
    calls = []
    monkeypatch.setattr(control, "launch_engine", lambda ws, log, *args: calls.append((log, args)))
    return calls


async def test_evaluate_launches_an_eval_with_the_runs_settings(workspace, run_with_checkpoints, launched):
    run_id, ids, _ = run_with_checkpoints
    app = ScreenApp(workspace, lambda: CheckpointsScreen(run_id))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await loaded(pilot, screen)
        await pilot.press("down", "e")
        assert isinstance(app.screen, EvaluateScreen)
        assert app.screen.query_one("#evaluate-dataset", Input).value == "arc1/train"
        assert app.screen.query_one("#evaluate-max-tasks", Input).value == "5"
        await pilot.press("escape")
        assert app.screen is screen and not launched

        await pilot.press("e", "enter")
        # The real engine checks the settings first (a subprocess): allow it a while.
        await wait_until(pilot, lambda: launched, timeout=60, what="the launch")
    log, args = launched[0]
    assert args == ("eval", "--checkpoint", str(ids[1]), "--dataset", "arc1/train", "--max-tasks", "5")
    assert log == workspace / f"runs/{run_id:04d}/eval-launch.log"
    assert not app.errors


async def open_evaluate_dialog(app, pilot) -> EvaluateScreen:
    """The evaluate dialog of the second checkpoint, once the list has loaded."""
    await loaded(pilot, app.screen)
    await pilot.press("down", "e")
    assert isinstance(app.screen, EvaluateScreen)
    return app.screen


async def test_evaluate_with_test_time_training_passes_steps_and_students(workspace, run_with_checkpoints,
                                                                           launched):
    run_id, ids, _ = run_with_checkpoints
    app = ScreenApp(workspace, lambda: CheckpointsScreen(run_id))
    async with app.run_test(size=(80, 24)) as pilot:
        dialog = await open_evaluate_dialog(app, pilot)
        dialog.query_one("#evaluate-ttt-steps", Input).value = "40"
        dialog.query_one("#evaluate-ttt-models", Input).value = "0"
        await pilot.press("enter")
        assert app.screen is dialog and "ttt_models" in str(dialog.query_one("#evaluate-error").render())
        assert dialog.query_one("#evaluate-ttt-models").region.bottom <= 24   # on screen at 80x24
        dialog.query_one("#evaluate-ttt-models", Input).value = "3"
        await pilot.press("enter")
        await wait_until(pilot, lambda: launched, timeout=60, what="the launch")
    assert launched[0][1] == ("eval", "--checkpoint", str(ids[1]), "--dataset", "arc1/train", "--max-tasks", "5",
                              "--ttt-steps", "40", "--models", "3")
    assert not app.errors


@pytest.mark.slow
async def test_evaluate_really_starts_an_eval_run(workspace, run_with_checkpoints):
    """Through a real engine process: the checkpoint files here are not checkpoints, so
    the eval run it creates fails, saying so — which proves the command line is right."""
    run_id, ids, _ = run_with_checkpoints
    before = set(run_ids(workspace))
    try:
        control.evaluate_checkpoint(workspace, ids[0], "arc1/train", 1)
        new = wait_for(lambda: set(run_ids(workspace)) - before, timeout=60, what="the eval run")
        with Store.open_readonly(workspace) as store:
            run = store.get_run(new.pop())
            assert run.kind == "eval" and run.config["checkpoint_id"] == ids[0]
            assert run.config["max_tasks"] == 1
        wait_for(lambda: run_status(workspace, run.id) == "failed",
                 timeout=90, what="the eval run to fail on the fake checkpoint")
        with Store.open_readonly(workspace) as store:
            assert "checkpoint" in (store.get_run(run.id).message or "")
    finally:
        stop_all_engines(workspace)


async def test_resume_from_the_selected_checkpoint(workspace, run_with_checkpoints, launched):
    run_id, ids, _ = run_with_checkpoints
    app = ScreenApp(workspace, lambda: CheckpointsScreen(run_id))
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, app.screen)
        await pilot.press("down", "r")
        await wait_until(pilot, lambda: launched, timeout=10, what="the resume")
    assert [args for _, args in launched] == [("resume", str(run_id), "--checkpoint", str(ids[1]))]
    assert not app.errors


async def test_open_tasks_and_compare_two_evaluations(workspace, run_with_checkpoints):
    run_id, _, evaluations = run_with_checkpoints
    app = ScreenApp(workspace, lambda: CheckpointsScreen(run_id))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await loaded(pilot, screen)
        await pilot.press("tab")  # to the evaluations table
        assert app.focused.id == "evaluations-table"
        await pilot.press("enter")
        assert isinstance(app.screen, TasksScreen) and app.screen.evaluation_id == evaluations[0]
        await pilot.press("escape")

        await pilot.press("c")  # nothing marked, cursor on the first: nothing to compare with
        assert app.screen is screen
        await pilot.press("space", "down", "c")
        assert isinstance(app.screen, CompareScreen)
        assert (app.screen.evaluation_a, app.screen.evaluation_b) == tuple(evaluations)
        await wait_until(pilot, lambda: app.screen.comparison is not None, timeout=10, what="compare")
        assert app.screen.comparison.count("gained") == 1
    assert not app.errors


async def test_a_hidden_checkpoints_screen_stops_reading_and_starts_again_when_shown(
        workspace, run_with_checkpoints, monkeypatch):
    from sage_tui.screens import checkpoints as screen_module

    run_id, _, _ = run_with_checkpoints
    reads = []
    real = screen_module.data_tasks.load_checkpoints
    monkeypatch.setattr(screen_module.data_tasks, "load_checkpoints",
                        lambda *args: reads.append(1) or real(*args))
    monkeypatch.setattr(CheckpointsScreen, "POLL_S", 0.1)
    app = ScreenApp(workspace, lambda: CheckpointsScreen(run_id))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await loaded(pilot, screen)
        await pilot.press("t")    # the tasks of an evaluation, on top
        assert app.screen is not screen, app.screen
        await wait_until(pilot, lambda: screen.paused, timeout=5, what="the hidden screen to pause")
        count = len(reads)
        assert screen.poll_timer is None   # nothing left to wake it while hidden
        await pilot.press("escape")
        await wait_until(pilot, lambda: len(reads) > count and not screen.paused, timeout=5,
                         what="reading again once shown")


async def test_the_evaluate_dialog_refuses_a_dataset_that_does_not_resolve(workspace, run_with_checkpoints):
    """Today it accepted `arc3/foo` and launched an eval that failed later."""
    run_id, ids, _ = run_with_checkpoints
    app = ScreenApp(workspace, lambda: CheckpointsScreen(run_id))
    async with app.run_test(size=(80, 24)) as pilot:
        dialog = await open_evaluate_dialog(app, pilot)
        dialog.query_one("#evaluate-dataset", Input).value = "arc3/foo"
        dialog.query_one("#evaluate-max-tasks", Input).value = "0"
        await pilot.press("enter")
        assert app.screen is dialog and "max_tasks" in str(dialog.query_one("#evaluate-error").render())
        dialog.query_one("#evaluate-max-tasks", Input).value = "3"
        await pilot.press("enter")
        assert app.screen is dialog and "no folder at arc3/foo" in str(dialog.query_one("#evaluate-error").render())
