"""The SAGE TUI application: screens, shared state, worker error handling."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from sage_tui.screens.run import RunScreen
from sage_tui.screens.runs import RunsScreen


class SageApp(App):
    TITLE = "SAGE TUI"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("ctrl+q", "quit", "Quit", show=False, id="app.ctrl_quit"),
    ]

    def __init__(self, workspace: Path, open_run: int | None = None) -> None:
        super().__init__()
        self.workspace = workspace
        self.initial_run = open_run
        self.sub_title = str(workspace)

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())
        if self.initial_run is not None:
            self.open_run(self.initial_run)

    def open_run(self, run_id: int) -> None:
        self.push_screen(RunScreen(run_id))

    def action_help(self) -> None:
        self.action_show_help_panel()

    @on(Worker.StateChanged)
    def worker_failed(self, event: Worker.StateChanged) -> None:
        """The one place where a failed worker becomes a message to the user."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.notify(f"{type(error).__name__}: {error}", title="error", severity="error", timeout=10)
            # A failed poll is retried: the database may be briefly locked or not yet created.
            node = event.worker.node
            if event.worker.group in ("runs-poll", "run-poll") and hasattr(node, "poll"):
                node.set_timer(3.0, node.poll)
