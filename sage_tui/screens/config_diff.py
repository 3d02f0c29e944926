"""The settings two runs differ in, side by side (and how many they share)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from db.store import Run

MISSING = object()


def config_diff(a: dict, b: dict) -> tuple[list[tuple[str, object, object]], int]:
    """(key, value in a, value in b) for every setting that differs, sorted by key; a
    setting one run lacks is MISSING there. Also the number of settings they share."""
    differ, same = [], 0
    for key in sorted(a.keys() | b.keys()):
        left, right = a.get(key, MISSING), b.get(key, MISSING)
        if left == right:
            same += 1
        else:
            differ.append((key, left, right))
    return differ, same


def value_text(value: object) -> Text:
    return Text("(engine default)", style="dim") if value is MISSING else Text(repr(value))


class ConfigDiffScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="diff.close"),
        Binding("q", "close", "Close", show=False, id="diff.close_q"),
    ]

    def __init__(self, a: Run, b: Run) -> None:
        super().__init__()
        self.a, self.b = a, b

    def compose(self) -> ComposeResult:
        differ, same = config_diff(self.a.config, self.b.config)
        table = Table(title=f"Settings: run {self.a.id} {self.a.name} vs run {self.b.id} {self.b.name}",
                      title_justify="left", box=None, padding=(0, 2, 0, 0))
        table.add_column("setting", style="bold cyan", no_wrap=True)
        table.add_column(f"run {self.a.id}")
        table.add_column(f"run {self.b.id}")
        for key, left, right in differ:
            table.add_row(key, value_text(left), value_text(right))
        caption = (f"{len(differ)} setting(s) differ, {same} the same" if differ
                   else f"the same settings ({same})")
        with VerticalScroll(id="diff-box"):
            yield Static(table)
            yield Static(f"\n{caption}   [b]esc[/b] closes", id="diff-caption")

    def action_close(self) -> None:
        self.dismiss(None)
