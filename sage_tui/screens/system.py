"""This machine's GPUs, CPU, RAM and disk, live, without a particular run."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header

from sage_tui.screens.base import COMMON_KEYS, SageScreen
from sage_tui.data import SystemSnapshot, load_system
from sage_tui.widgets.system import SystemPanel

POLL_S = 2.0


class SystemScreen(SageScreen):
    POLL_S = POLL_S
    BINDINGS = [*COMMON_KEYS]

    @dataclass
    class Loaded(Message):
        snapshot: SystemSnapshot

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield SystemPanel(id="system")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.poll()

    @work(thread=True, exclusive=True, group="system-poll", exit_on_error=False,
          description="read GPUs and system figures")
    def load(self) -> None:
        self.post_message(self.Loaded(load_system(self.app.workspace, None)))

    @on(Loaded)
    def show(self, message: Loaded) -> None:
        self.query_one(SystemPanel).show(message.snapshot)
        self.rearm_poll()
