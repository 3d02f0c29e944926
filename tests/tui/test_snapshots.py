"""Snapshots of the main screens at 80x24 and 160x48, from a frozen workspace (in the
test's own temporary folder, shown under a fixed name) and a frozen clock (no live
engine, nothing clock-dependent on screen).
Regenerate after a deliberate change with: pytest tests/tui/test_snapshots.py --snapshot-update"""

from __future__ import annotations

import time

import pytest

from sage_tui.app import SageApp
from sage_tui.widgets.run_tabs import LogTab
from sage_tui.screens.run import RunScreen
from sage_tui.screens.runs import RunsScreen

from tests.tui.fixtures import FrozenClock, build_frozen_workspace
from tests.tui.helpers import wait_until

SHOWN_WORKSPACE = "~/sage-workspace"   # the header shows this, wherever the test runs
SIZES = [(80, 24), (160, 48)]


@pytest.fixture
def frozen_app(monkeypatch, tmp_path):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    workspace = build_frozen_workspace(tmp_path / "workspace")

    def make(open_run: int | None = None) -> SageApp:
        app = SageApp(workspace, open_run=open_run, clock=FrozenClock())
        app.sub_title = SHOWN_WORKSPACE
        return app

    yield make
    monkeypatch.delenv("TZ")
    time.tzset()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs_screen(snap_compare, frozen_app, size):
    app = frozen_app()

    async def loaded(pilot):
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.shown,
                         timeout=10, what="the runs")

    assert snap_compare(app, terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_screen_curves(snap_compare, frozen_app, size):
    app = frozen_app(open_run=2)

    async def loaded(pilot):
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.curves.plotted_keys
                         and all((2, k) in app.screen.curves.series for k in app.screen.curves.plotted_keys),
                         timeout=10, what="the curves")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=loaded)


def test_new_run_form(snap_compare, frozen_app):
    app = frozen_app()

    async def opened(pilot):
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.shown,
                         timeout=10, what="the runs")
        await pilot.press("n")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=opened)


def test_failed_run_status_and_log(snap_compare, frozen_app):
    app = frozen_app(open_run=4)

    async def loaded(pilot):
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.reason,
                         timeout=10, what="the failure reason")
        await pilot.press("l")
        await wait_until(pilot, lambda: app.screen.query_one(LogTab).text, timeout=10, what="the log")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=loaded)


def test_run_screen_help(snap_compare, frozen_app):
    app = frozen_app(open_run=2)

    async def opened(pilot):
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.curves.plotted_keys,
                         timeout=10, what="the run")
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=opened)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_checkpoints_screen(snap_compare, frozen_app, size):
    app = frozen_app()

    async def opened(pilot):
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.shown,
                         timeout=10, what="the runs")
        await pilot.press("j", "j", "j", "j", "j", "c")   # baseline-tiny's checkpoints
        await wait_until(pilot, lambda: getattr(app.screen, "view", None) is not None,
                         timeout=10, what="the checkpoints")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=opened)
