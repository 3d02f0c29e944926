"""`?` help: the keys of the screen it was opened from, then the app-wide keys."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

ABOUT = {
    "RunsScreen": "Every run in the workspace. Runs keep going when the dashboard quits.",
    "RunScreen": "One run: live curves grouped by kind, system, events, engine log, config.",
    "NewRunScreen": "Settings of a new run; each is checked here and by the engine before launch.",
    "SystemScreen": "This machine: GPUs (with our engine processes marked), CPU, RAM, disk.",
}


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="help.close"),
        Binding("question_mark", "close", "Close", show=False, id="help.close_question"),
        Binding("q", "close", "Close", show=False, id="help.close_q"),
    ]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.for_screen = screen

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(self.keys_table(), id="help-keys")

    def keys_table(self) -> Table:
        name = type(self.for_screen).__name__
        table = Table(title=ABOUT.get(name, name), title_justify="left", show_header=False,
                      box=None, padding=(0, 2, 0, 0), expand=False)
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        seen = set()
        for binding in [*self.for_screen.BINDINGS, *self.app.BINDINGS]:
            if not isinstance(binding, Binding) or binding.action in seen:
                continue
            seen.add(binding.action)
            table.add_row(self.app.get_key_display(binding), binding.description or binding.action)
        table.add_row("ctrl+p", "command palette: open a run, new run, system, …")
        table.add_row("esc", "close this help")
        return table

    def action_close(self) -> None:
        self.dismiss(None)
