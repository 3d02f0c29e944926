"""What every screen shares: one rule for keys (esc back, q quit, ? keys), a polling loop
that pauses while its screen is hidden, "run an action in a thread, notify, refresh",
and the key of a table's selected row.

Screens list their own keys first (the footer shows them in that order, so the most used
come first and fit at 80 columns) and end with ``*COMMON_KEYS``; `?` is the app's.
"""

from __future__ import annotations

from typing import Callable

from textual import work
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable

from sage_tui.workers import ReportsWorkerErrors

COMMON_KEYS = [
    Binding("escape", "back", "Back", id="screen.back"),
    Binding("q", "app.quit", "Quit", id="screen.quit"),
]


class SageTable(DataTable):
    """A row table that also moves with j / k, as in k9s and lazygit."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]


def is_shown(screen: Screen) -> bool:
    """The screen is in front, or only a modal (help, a question) covers part of it.
    Textual's ``is_current`` also holds for a full screen left behind another one."""
    top = screen.app.screen
    return top is screen or (isinstance(top, ModalScreen) and screen.is_current)


def selected_row_key(table: DataTable) -> str | None:
    """The key of the row under the cursor, or None for an empty table."""
    if table.row_count == 0:
        return None
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


class SageScreen(ReportsWorkerErrors, Screen):
    """A screen of the app. Subclasses with a live view set ``POLL_S`` and implement
    ``load`` (a thread worker that posts its result); ``poll`` then runs it every
    ``POLL_S`` seconds while the screen is shown and pauses while it is hidden."""

    POLL_S: float | None = None

    def __init__(self) -> None:
        super().__init__()
        self.poll_timer = None
        self.paused = False

    def action_back(self) -> None:
        self.app.pop_screen()

    # ------------------------------------------------------------- polling
    def poll(self) -> None:
        """Read now; hidden screens do not read, and start again when shown."""
        if self.poll_timer is not None:
            self.poll_timer.stop()
            self.poll_timer = None
        if not is_shown(self):
            self.paused = True
            return
        self.load()

    def load(self) -> None:
        raise NotImplementedError

    def rearm_poll(self) -> None:
        """Called when a read has been shown: one one-shot timer, so reads never overlap;
        an extra poll (after an action) replaces the pending one."""
        if self.POLL_S is None:
            return
        if self.poll_timer is not None:
            self.poll_timer.stop()
        self.poll_timer = self.set_timer(self.POLL_S, self.poll)

    def on_screen_resume(self) -> None:
        if self.paused:
            self.paused = False
            self.poll()

    # ------------------------------------------------------------- actions
    @work(thread=True, group="screen-action", exit_on_error=False, description="run an action")
    def act(self, action: Callable[[], str]) -> None:
        """Run a blocking action (a launch, a signal, a delete) off the event loop; its
        answer becomes a notification and the screen (and the runs list) are read again."""
        message = action()
        self.app.call_from_thread(self.notify, message)
        self.app.call_from_thread(self.after_action)

    def after_action(self) -> None:
        if self.POLL_S is not None:
            self.poll()
        if hasattr(self.app, "poll"):
            self.app.poll()
