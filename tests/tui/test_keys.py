"""One rule on every screen (esc back, q quit, ? keys) and footers that fit 80 columns."""

from __future__ import annotations

import pytest
from textual.widgets import Footer

from sage_tui.app import SageApp
from sage_tui.screens.checkpoints import CheckpointsScreen
from sage_tui.screens.compare import CompareScreen
from sage_tui.screens.run import RunScreen
from sage_tui.screens.runs import RunsScreen
from sage_tui.screens.system import SystemScreen
from sage_tui.screens.task_view import TaskViewScreen
from sage_tui.screens.tasks import TasksScreen

from tests.tui.fixtures import FrozenClock, build_frozen_workspace
from tests.tui.helpers import wait_until

SCREENS = [RunsScreen, RunScreen, CheckpointsScreen, TasksScreen, TaskViewScreen, CompareScreen,
           SystemScreen]


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: s.__name__)
def test_every_screen_has_esc_back_and_q_quit(screen):
    bindings = {key: [b.action for b in found] for key, found in
                screen._merge_bindings().key_to_bindings.items()}
    assert "back" in bindings["escape"]
    assert bindings["q"] == ["app.quit"]
    app_keys = {key for b in SageApp.BINDINGS for key in b.key.split(",")}
    assert "question_mark" in app_keys


@pytest.fixture
def frozen(tmp_path):
    return build_frozen_workspace(tmp_path / "workspace")


def footer_keys(app) -> list[tuple[str, int]]:
    """(key, right edge) of every key the footer shows."""
    footer = app.screen.query_one(Footer)
    return [(key.key, key.region.right) for key in footer.children if hasattr(key, "key")]


@pytest.mark.parametrize("open_run", [None, 2], ids=["runs", "run"])
async def test_footers_fit_80_columns_with_quit_and_keys(frozen, open_run):
    app = SageApp(frozen, open_run=open_run, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        expected = RunsScreen if open_run is None else RunScreen
        await wait_until(pilot, lambda: isinstance(app.screen, expected), timeout=10, what="the screen")
        await pilot.pause(0.5)
        shown = footer_keys(app)
        assert shown and all(right <= 80 for _, right in shown), str(shown)
        keys = [key for key, _ in shown]
        assert keys[-2:] == ["q", "question_mark"]
        first = ["n", "s", "r", "l", "c"] if open_run is None else ["s", "r", "l", "c"]
        assert keys[:len(first)] == first   # the most used keys first
