"""Every notification of this session, newest first, with its time: a failure reason is
never lost when its toast fades."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "information": ""}


@dataclass
class Notice:
    t: float
    title: str
    message: str
    severity: str


class NotificationsScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="notifications.close"),
        Binding("q", "close", "Close", show=False, id="notifications.close_q"),
    ]

    def __init__(self, notices: list[Notice]) -> None:
        super().__init__()
        self.notices = list(notices)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="notifications-box"):
            yield Static(self.table(), id="notifications-list")

    def table(self) -> Table | Text:
        if not self.notices:
            return Text("No notifications yet in this session.   esc closes")
        table = Table(title=f"Notifications of this session ({len(self.notices)}, newest first)"
                            "   esc closes", title_justify="left", show_header=False, box=None,
                      padding=(0, 1, 0, 0))
        table.add_column(style="dim", no_wrap=True)
        table.add_column()
        for notice in reversed(self.notices):
            title = f"{notice.title}: " if notice.title else ""
            table.add_row(time.strftime("%H:%M:%S", time.localtime(notice.t)),
                          Text(title + notice.message, style=SEVERITY_STYLE.get(notice.severity, "")))
        return table

    def action_close(self) -> None:
        self.dismiss(None)
