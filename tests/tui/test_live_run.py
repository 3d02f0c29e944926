"""The dashboard drives a real engine: start from the form, watch the curve grow, stop,
resume (the curve continues with no step twice), then kill -9 and see it crashed."""

from __future__ import annotations

import signal

import pytest

from db.store import Store
from sage_tui.app import SageApp
from sage_tui.screens.new_run import NewRunScreen
from sage_tui.screens.run import RunScreen
from sage_tui.screens.runs import RunsScreen

from tests.tui.helpers import run_ids, run_status, stop_all_engines, wait_until


@pytest.mark.slow
async def test_start_watch_stop_resume_and_crash_from_the_ui(workspace):
    app = SageApp(workspace)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("n")
            assert isinstance(app.screen, NewRunScreen)
            app.screen.query_one("#name").value = "live"
            await pilot.press("ctrl+s")   # the defaults: the quick CPU demo
            run_id = (await wait_until(pilot, lambda: run_ids(workspace), timeout=30,
                                       what="the new run's row"))[0]
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen)
                             and run_id in app.screen.rows, timeout=15, what="the run in the table")
            await pilot.press("enter")
            assert isinstance(app.screen, RunScreen)
            screen = app.screen

            def steps() -> list[int]:
                series = screen.curves.series.get((run_id, "loss"))
                return list(series.steps) if series else []

            await wait_until(pilot, lambda: len(steps()) >= 1, timeout=120, what="the first loss point")
            first = len(steps())
            await wait_until(pilot, lambda: len(steps()) > first, timeout=60, what="the curve to grow")
            assert "running" in str(screen.query_one("#run-status").render())

            await pilot.press("s")
            await wait_until(pilot, lambda: run_status(workspace, run_id) == "stopped", timeout=60,
                             what="the run to stop")
            await wait_until(pilot, lambda: "stopped" in str(screen.query_one("#run-status").render()),
                             timeout=10, what="stopped on screen")
            with Store.open_readonly(workspace) as store:
                checkpoint_step = store.checkpoints(run_id)[-1].step
            assert checkpoint_step >= 1

            await pilot.press("r")
            try:
                await wait_until(pilot, lambda: steps() and steps()[-1] > checkpoint_step + 2, timeout=90,
                                 what="the curve to continue after the resume")
            except AssertionError:
                log = (workspace / "runs" / f"{run_id:04d}" / "engine.log").read_text()[-3000:]
                notes = [n.message for n in app._notifications]
                raise AssertionError(f"status {run_status(workspace, run_id)}, held steps "
                                     f"{steps()[-5:]}, notifications {notes}, log:\n{log}") from None
            held = steps()
            assert held == sorted(set(held)), "a step appears twice or out of order"
            assert checkpoint_step in held or held[0] <= checkpoint_step

            with Store.open_readonly(workspace) as store:
                run = store.get_run(run_id)
            assert run.pid and run.host
            from db.processes import signal_engine
            assert signal_engine(run, signal.SIGKILL)
            await wait_until(pilot, lambda: "crashed" in str(screen.query_one("#run-status").render()),
                             timeout=30, what="crashed on screen within 30 s")
            await wait_until(pilot, lambda: any(f"run {run_id} live crashed" in n.message
                                                for n in app._notifications),
                             timeout=10, what="the crash notification")

            def crash_recorded() -> bool:   # in the events and at the end of the log
                with Store.open_readonly(workspace) as store:
                    events = [e.kind for e in store.events(run_id, limit=10_000)]
                log = (workspace / "runs" / f"{run_id:04d}" / "engine.log").read_text()
                return "crashed" in events and "engine process gone" in log.splitlines()[-1]

            await wait_until(pilot, crash_recorded, timeout=10, what="the crash written down")
    finally:
        stop_all_engines(workspace)
