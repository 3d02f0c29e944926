"""`?` help: every key of the screen it was opened from, with readable names, then the
keys of its lists and the app-wide keys."""

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
    "CheckpointsScreen": "A run's checkpoints (★ the best) and the evaluations made from them.",
    "TasksScreen": "The tasks of one evaluation: solved, partly solved, failed.",
    "TaskViewScreen": "One task: test input, expected output, both attempts and their diffs.",
    "CompareScreen": "Two evaluations: the tasks B gained over A, lost, and left unchanged.",
}
# Key names as a user reads them.
READABLE = {"escape": "esc", "enter": "enter", "space": "space", "slash": "/",
            "question_mark": "?", "plus": "+", "equals_sign": "=", "minus": "-",
            "pageup": "PgUp", "pagedown": "PgDn", "left": "←", "right": "→", "up": "↑",
            "down": "↓", "home": "Home", "end": "End", "tab": "tab",
            "left_square_bracket": "[", "right_square_bracket": "]"}
TABLE_KEYS = ("↑ ↓ / j k", "move in a list")


def key_name(key: str) -> str:
    if key in READABLE:
        return READABLE[key]
    if key.startswith("ctrl+"):
        return "ctrl+" + key_name(key[5:])
    return key


def screen_keys(screen: Screen, app_bindings: list) -> list[tuple[str, str]]:
    """(keys, what they do) for every binding of the screen, then the app's: keys with
    the same action share a row ("l, 4  Log")."""
    rows: dict[str, tuple[list[str], str]] = {}
    # The screen's keys, then those of its own widgets (a tab's keys), then the app's.
    widget_bindings = [binding for widget in screen.query("*")
                       if type(widget).__module__.startswith("sage_tui.")
                       for binding in type(widget).__dict__.get("BINDINGS", [])]
    for binding in [*screen.BINDINGS, *widget_bindings, *app_bindings]:
        if not isinstance(binding, Binding):
            continue
        keys, description = rows.setdefault(binding.action, ([], binding.description or binding.action))
        for key in binding.key.split(","):
            name = key_name(key.strip())
            if name not in keys:
                keys.append(name)
    return [(", ".join(keys), description) for keys, description in rows.values()]


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
        for keys, description in screen_keys(self.for_screen, self.app.BINDINGS):
            table.add_row(keys, description)
        if self.for_screen.query("DataTable"):
            table.add_row(*TABLE_KEYS)
        table.add_row("ctrl+p", "command palette: open a run, new run, system, …")
        table.add_row("esc", "close this help")
        return table

    def action_close(self) -> None:
        self.dismiss(None)
