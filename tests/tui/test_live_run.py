"""The dashboard starts a real engine process and draws its curve as it trains."""

from __future__ import annotations

from db.store import Store
from sage_tui.app import SageApp
from sage_tui.screens.run import RunScreen

from tests.tui.helpers import run_ids, run_status, stop_all_engines, wait_until


async def test_start_a_run_from_the_ui_and_watch_the_curve_grow(workspace):
    app = SageApp(workspace)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("n")
            run_id = (await wait_until(pilot, lambda: run_ids(workspace), what="the new run's row"))[0]
            await wait_until(pilot, lambda: app.screen.rows.get(run_id) is not None, timeout=15,
                             what="the run in the runs table")
            await pilot.press("enter")
            assert isinstance(app.screen, RunScreen)
            screen = app.screen

            def points() -> int:
                series = screen.series.get("loss")
                return len(series.steps) if series else 0

            await wait_until(pilot, lambda: points() >= 1, timeout=120, what="the first loss point")
            first = points()
            await wait_until(pilot, lambda: points() > first, timeout=60, what="the curve to grow")
            assert screen.query_one("#run-status").render().plain.count("running") == 1

            await pilot.press("s")
            await wait_until(pilot, lambda: run_status(workspace, run_id) == "stopped", timeout=60,
                             what="the run to stop")
            with Store.open_readonly(workspace) as store:
                assert [c.reason for c in store.checkpoints(run_id)][-1] == "stop"
    finally:
        stop_all_engines(workspace)
