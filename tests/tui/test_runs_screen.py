"""The runs screen on a frozen workspace: columns, filters, delete, clone, log, help,
command palette and the notification when a live run is found dead."""

from __future__ import annotations

import re
import time

import pytest
from textual.widgets import DataTable, Input

from db.store import Store
from sage_tui.app import SageApp
from sage_tui.widgets.run_tabs import LogTab
from sage_tui.screens.confirm import ConfirmScreen
from sage_tui.screens.help import HelpScreen
from sage_tui.screens.new_run import NewRunScreen
from sage_tui.screens.run import RunScreen
from sage_tui.screens.runs import RunsScreen

from tests.tui.fixtures import FrozenClock, build_frozen_workspace
from tests.tui.helpers import wait_until


@pytest.fixture
def frozen(tmp_path):
    return build_frozen_workspace(tmp_path / "workspace")


def table_of(app) -> DataTable:
    return app.screen.query_one(DataTable)


def column(app, name: str) -> list[str]:
    table = table_of(app)
    return [str(table.get_cell(row_key, name)) for row_key in table.rows]


async def loaded(app, pilot, rows: int = 6):
    await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and table_of(app).row_count == rows,
                     timeout=10, what=f"{rows} rows in the runs table")


async def test_every_run_shows_kind_status_progress_and_best(frozen):
    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(app, pilot)
        assert column(app, "name") == ["queued-next", "lr-sweep-1e-3", "oom-crash", "extract-arc1",
                                       "distill-gr00t", "baseline-tiny"]
        assert column(app, "status") == ["queued", "stopped", "failed", "finished", "running", "finished"]
        assert column(app, "kind")[3] == "extract"
        assert column(app, "prog")[4] == "30%"
        assert column(app, "ETA")[4] == "1h10m"
        assert column(app, "best")[5] == "0.50"
        assert column(app, "epoch")[4] == "6.0"
        assert column(app, "device")[4] == "cuda:0"
        assert column(app, "updated")[4] == "2s ago"
        assert column(app, "reason")[2] == "CUDA out of memory"
        assert column(app, "reason")[0] == ""


def rendered_lines(app) -> list[str]:
    return [strip.text for strip in app.screen._compositor.render_strips()]


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_columns_fit_the_width_and_names_and_devices_are_whole(frozen, size):
    with Store.open(frozen) as store:
        store.update_run(2, name="distill-gr00t-layer12-long-name")
    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=size) as pilot:
        await loaded(app, pilot)
        screen = "\n".join(rendered_lines(app))
        assert "cuda:0" in screen                  # the device, not one character of it
        name_room = 18 if size[0] == 80 else 32
        assert "distill-gr00t-layer12-long-name"[:name_room] in screen
        if size[0] == 160:
            assert "distill-gr00t-layer12-long-name" in screen
            assert "CUDA out of memory" in screen   # the reason column
        table = table_of(app)
        assert table.virtual_size.width <= size[0] - 2  # nothing cut off, room for a scrollbar


async def test_the_selected_runs_failure_reason_stays_on_screen(frozen):
    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("j", "j")   # j/k move in lists: oom-crash
        detail = str(app.screen.query_one("#runs-detail").render())
        assert "oom-crash" in detail and "failed" in detail and "CUDA out of memory" in detail
        await pilot.press("k")
        assert "lr-sweep-1e-3" in str(app.screen.query_one("#runs-detail").render())


async def test_sort_by_column_and_header_click(frozen):
    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("o")   # by name
        assert column(app, "name") == sorted(column(app, "name"))
        await pilot.press("o")   # by status
        assert column(app, "status") == sorted(column(app, "status"))
        app.screen.sort("step")
        await pilot.pause()
        steps = [int(v) for v in column(app, "step")]
        assert steps == sorted(steps, reverse=True)


async def test_mark_several_runs_and_delete_them_together(frozen):
    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("j", "space", "space")   # marks lr-sweep-1e-3 and oom-crash
        assert app.screen.marked == {4, 5}
        assert column(app, "mark")[1:3] == ["●", "●"]
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        assert "2 runs (4, 5)" in app.screen.question
        await pilot.press("y")
        await loaded(app, pilot, rows=4)
        assert "oom-crash" not in column(app, "name") and "lr-sweep-1e-3" not in column(app, "name")


async def test_config_diff_of_two_marked_runs(frozen):
    from sage_tui.screens.config_diff import MISSING, ConfigDiffScreen, config_diff

    assert config_diff({"lr": 0.001, "epochs": 8}, {"lr": 0.003, "epochs": 8, "preset": "tiny"}) == (
        [("lr", 0.001, 0.003), ("preset", MISSING, "tiny")], 1)
    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("j", "space")          # lr-sweep-1e-3 (run 5)
        await pilot.press("j", "j", "j", "j")    # baseline-tiny (run 1), under the cursor
        await pilot.press("D")
        assert isinstance(app.screen, ConfigDiffScreen)
        assert (app.screen.a.id, app.screen.b.id) == (1, 5)
        text = " ".join(strip.text for strip in app.screen._compositor.render_strips())
        assert "0.003" in text and "0.001" in text and "(engine default)" in text


async def test_notification_history_keeps_every_toast_with_its_time(frozen):
    from sage_tui.screens.notifications import NotificationsScreen

    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        app.notify("first thing", title="one")
        app.notify("run 9 failed: disk full", severity="error")
        await pilot.press("N")
        assert isinstance(app.screen, NotificationsScreen)
        text = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
        assert "run 9 failed: disk full" in text and "one: first thing" in text
        assert text.index("disk full") < text.index("first thing")   # newest first
        assert re.search(r"\d\d:\d\d:\d\d", text)


async def test_filter_by_text_and_by_status(frozen):
    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("slash", *"sweep")
        assert app.screen.query_one(Input).has_focus
        assert column(app, "name") == ["lr-sweep-1e-3"]
        await pilot.press("enter")  # back to the table
        assert table_of(app).has_focus
        app.screen.query_one(Input).value = ""
        await pilot.pause()
        await pilot.press("f", "f")   # all -> running -> queued
        assert column(app, "name") == ["queued-next"]
        await pilot.press("f")        # stopped
        assert column(app, "status") == ["stopped"]


async def test_delete_asks_first_then_removes_rows_and_files(frozen):
    app = SageApp(frozen, clock=FrozenClock())
    run_folder = frozen / "runs" / "0004"
    assert run_folder.exists()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("down", "down", "d")   # oom-crash (failed)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("d", "y")
        await loaded(app, pilot, rows=5)
        assert "oom-crash" not in column(app, "name")
    assert not run_folder.exists()
    with Store.open_readonly(frozen) as store:
        assert [r.name for r in store.list_runs()].count("oom-crash") == 0
        assert store.read_metrics_after(4, "loss").steps == []


async def test_delete_of_a_live_run_says_so_before_asking(frozen):
    with Store.open(frozen) as store:
        store.update_run(6, created_at=time.time())   # queued just now: its engine may come up
    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("d")
        assert not isinstance(app.screen, ConfirmScreen)   # no y/n question first
        assert any("stop it before deleting" in n.message for n in app._notifications)
        assert table_of(app).row_count == 6


async def test_clone_opens_the_form_with_the_runs_settings(frozen):
    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("down", "C")   # lr-sweep-1e-3
        assert isinstance(app.screen, NewRunScreen)
        assert app.screen.query_one("#lr", Input).value == "0.001"
        assert app.screen.query_one("#name", Input).value == "lr-sweep-1e-3-copy"
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_log_key_opens_a_failed_runs_log_with_the_traceback_marked(frozen):
    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("down", "down", "l")   # oom-crash
        assert isinstance(app.screen, RunScreen)
        screen = app.screen
        await wait_until(pilot, lambda: "OutOfMemoryError" in screen.query_one(LogTab).text, timeout=10, what="the log")
        await wait_until(pilot, lambda: "OutOfMemoryError" in str(screen.query_one("#run-status").render()),
                         timeout=10, what="the failure reason in the status line")
        log = screen.query_one("#log")
        styled = [strip for strip in log.lines if "OutOfMemoryError" in strip.text]
        assert styled and any(segment.style and segment.style.color and segment.style.color.name == "red"
                              for segment in styled[0])


async def test_a_running_run_whose_heartbeat_goes_stale_is_crashed_and_notified(frozen):
    def crash_events():
        with Store.open_readonly(frozen) as store:
            return [e for e in store.events(2) if e.kind == "crashed"]

    clock = FrozenClock()
    app = SageApp(frozen, clock=clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        assert column(app, "status")[4] == "running"
        clock.now += 31   # the engine on the other host has been silent for 33 s
        await wait_until(pilot, lambda: column(app, "status")[4] == "crashed", timeout=10,
                         what="the run marked crashed")
        await wait_until(pilot, lambda: any("distill-gr00t crashed" in n.message for n in app._notifications),
                         timeout=5, what="the crash notification")
        # The dashboard writes what it found in a worker thread: an event, and a line at
        # the end of the log.
        await wait_until(pilot, crash_events, timeout=10, what="the crashed event")

    [event] = crash_events()   # once
    assert "engine process gone" in event.message
    from sage_tui import control
    assert control.record_crash(frozen, 2) is False and len(crash_events()) == 1


def test_a_run_that_does_not_exist_is_one_message_and_exit_2(frozen, capsys):
    from sage_tui.__main__ import main

    assert main(["--workspace", str(frozen), "--run", "99"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run 99" in err and "sage-engine runs" in err


async def test_opening_a_missing_run_in_the_app_is_one_notification(frozen):
    app = SageApp(frozen, open_run=99, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and any(
            "no run 99" in n.message for n in app._notifications), timeout=10, what="the message")
        await pilot.pause(1.5)   # a poll or two later: still one message
        assert sum("no run 99" in n.message for n in app.notices) == 1


def test_demo_resumes_a_stopped_demo_run_instead_of_starting_over(frozen, monkeypatch):
    """Stand-in for the engine launch (recorded, not run): which run the demo picks."""
    from sage_tui import __main__ as entry, control

    calls = []
    monkeypatch.setattr(control, "resume_run", lambda ws, run_id: calls.append(("resume", run_id)) or "resuming")
    monkeypatch.setattr(control, "start_run",
                        lambda ws, kind, name, config: calls.append(("start", name)) or Store.open(ws).create_run(name, kind, config))
    with Store.open(frozen) as store:
        demo = store.create_run("demo", "train", {})
        store.update_run(demo.id, status="stopped", step=120)
    assert entry.start_demo(frozen) == demo.id and calls == [("resume", demo.id)]
    with Store.open(frozen) as store:
        store.update_run(demo.id, status="finished")
    calls.clear()
    assert entry.start_demo(frozen) != demo.id and calls == [("start", "demo")]


async def test_help_lists_the_screens_keys(frozen):
    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.keys_table().columns[1]._cells)
        for description in ("New", "Stop", "Resume", "Clone", "Delete", "Filter", "Quit", "Clear filter",
                            "Notification history", "Sort by next column"):
            assert description in text
        keys = app.screen.keys_table().columns[0]._cells
        assert "/" in keys and "esc" in keys and "?, f1" in keys and "slash" not in keys
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_command_palette_opens_a_run(frozen):
    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("ctrl+p", *"open run 1 base")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), timeout=5, what="the run screen")
        assert app.screen.run_id == 1


async def test_enter_opens_and_escape_returns(frozen):
    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot)
        await pilot.press("enter")
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == 6
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("y")
        assert type(app.screen).__name__ == "SystemScreen"


async def test_the_demo_ends_with_an_evaluation_of_its_best_checkpoint(frozen, monkeypatch):
    """When the dashboard sees the demo run finish it starts `sage-engine eval` on the best
    checkpoint (stand-in for the launch: the command line is recorded, not run)."""
    from sage_tui import control
    from tests.tui.fixtures import FROZEN_NOW, OTHER_HOST

    launched = []
    monkeypatch.setattr(control, "launch_engine", lambda ws, log, *args: launched.append(args))
    # The checkpoint files below are stand-ins, which the engine's own check would refuse:
    # its check is not the subject here (tests/tui/test_checkpoints_screen.py tests it).
    monkeypatch.setattr(control, "check_config", lambda *args: control.CheckResult(True))
    with Store.open(frozen) as store:
        demo = store.create_run("demo", "train", dict(control.DEMO_CONFIG))
        store.update_run(demo.id, status="running", host=OTHER_HOST, pid=1, heartbeat_at=FROZEN_NOW)
        early = store.add_checkpoint(demo.id, 50, 1.0, "runs/x/a.pt", 10, {"val_pass2": 0.5}, "periodic")
        store.add_checkpoint(demo.id, 200, 4.0, "runs/x/b.pt", 10, {"val_pass2": 0.25}, "final")
    app = SageApp(frozen, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(app, pilot, rows=7)
        with Store.open(frozen) as store:
            store.update_run(demo.id, status="finished")
        await wait_until(pilot, lambda: launched, timeout=10, what="the demo's evaluation")
        await wait_until(pilot, lambda: len(launched) == 2, timeout=10, what="both evaluations")
        assert launched[0] == ("eval", "--checkpoint", str(early), "--dataset", "arc1/train",
                               "--max-tasks", str(control.DEMO_EVAL_TASKS))
        # ... and held-out tasks learnt at test time, with no checkpoint.
        assert launched[1][:3] == ("eval", "--dataset", "arc1/eval") and "--ttt-steps" in launched[1]
        assert "--checkpoint" not in launched[1]
        await wait_until(pilot, lambda: any("demo finished" in n.message for n in app.notices),
                         timeout=5, what="the notification")
