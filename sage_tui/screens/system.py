"""This machine's GPUs, CPU, RAM and disk, live, without a particular run."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header

from sage_tui.workers import ReportsWorkerErrors
from sage_tui.data import SystemSnapshot, load_system
from sage_tui.widgets.system import SystemPanel

POLL_S = 2.0


class SystemScreen(ReportsWorkerErrors, Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="system.back"),
        Binding("q", "app.quit", "Quit", id="system.quit"),
    ]

    class Loaded(Message):
        def __init__(self, snapshot: SystemSnapshot) -> None:
            super().__init__()
            self.snapshot = snapshot

    def __init__(self) -> None:
        super().__init__()
        self.timer = None
        self.paused = False

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield SystemPanel(id="system")
        yield Footer()

    def on_mount(self) -> None:
        self.poll()

    def on_screen_resume(self) -> None:
        if self.paused:
            self.paused = False
            self.poll()

    def poll(self) -> None:
        if not self.is_current:
            self.paused = True
            return
        self.load()

    @work(thread=True, exclusive=True, group="system-poll", exit_on_error=False,
          description="read GPUs and system figures")
    def load(self) -> None:
        self.post_message(self.Loaded(load_system(self.app.workspace, None)))

    @on(Loaded)
    def show(self, message: Loaded) -> None:
        self.query_one(SystemPanel).show(message.snapshot)
        if self.timer is not None:
            self.timer.stop()
        self.timer = self.set_timer(POLL_S, self.poll)
