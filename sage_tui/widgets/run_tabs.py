"""The run screen's tabs other than the curves, each a widget with its own state, keys
and reads: events (filled from the screen's read), the engine log (follow, pager), the
system panel and the config. The log and system tabs read on their own, only while they
are shown on the screen in front, every ``POLL_S`` seconds."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import RichLog, Static

from db.store import Event, Run
from sage_tui.data import SystemSnapshot, is_traceback_line, load_system, read_log_tail
from sage_tui.screens.base import is_shown
from sage_tui.widgets.system import SystemPanel
from sage_tui.workers import ReportsWorkerErrors

POLL_S = 2.0


class PollingTab(ReportsWorkerErrors):
    """Reads every POLL_S seconds while the widget is shown and its screen is in front;
    ``load`` is a thread worker that posts its result, whose handler calls ``rearm``."""

    timer = None

    def on_show(self) -> None:
        self.poll()

    def poll(self) -> None:
        if self.timer is not None:
            self.timer.stop()
            self.timer = None
        if self.is_on_screen and is_shown(self.screen):
            self.load()
        # Hidden (another tab, or another screen in front): no reads until shown again.

    @property
    def is_on_screen(self) -> bool:
        return self.display and self.region.area > 0

    def rearm(self) -> None:
        if self.timer is not None:
            self.timer.stop()
        self.timer = self.set_timer(POLL_S, self.poll)

    def load(self) -> None:
        raise NotImplementedError


def log_style(line: str) -> str:
    """Tracebacks and errors stand out in the log tail."""
    if is_traceback_line(line) or " ERROR " in line:
        return "bold red"
    if " WARNING " in line:
        return "yellow"
    return ""


class LogTab(PollingTab, Vertical):
    """The tail of the engine's log: long lines wrap, tracebacks in red; follow keeps the
    end in view; the whole file opens in $PAGER."""

    BINDINGS = [
        Binding("f", "toggle_follow", "Log: follow on/off", show=False, id="log.follow"),
        Binding("v", "pager", "Log: open in $PAGER", show=False, id="log.pager"),
    ]

    @dataclass
    class Loaded(Message):
        text: str

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run: Run | None = None
        self.text = ""
        self.follow = True

    def compose(self) -> ComposeResult:
        yield Static(id="log-controls")
        yield RichLog(id="log", wrap=True, markup=False)

    def on_mount(self) -> None:
        self.show_controls()

    def set_run(self, run: Run) -> None:
        first = self.run is None
        self.run = run
        if first:
            self.poll()

    def load(self) -> None:
        if self.run is not None:
            self.read(self.run)

    @work(thread=True, exclusive=True, group="run-log", exit_on_error=False,
          description="read the engine log")
    def read(self, run: Run) -> None:
        self.post_message(self.Loaded(read_log_tail(self.app.workspace, run)))

    @on(Loaded)
    def show_text(self, message: Loaded) -> None:
        self.rearm()
        if message.text == self.text:
            return
        self.text = message.text
        log = self.query_one(RichLog)
        scroll_y = log.scroll_y
        log.clear()
        for line in message.text.splitlines():
            log.write(Text(line, style=log_style(line)), scroll_end=False)
        if self.follow:
            log.scroll_end(animate=False)
        else:
            log.scroll_to(y=scroll_y, animate=False)

    def show_controls(self) -> None:
        follow = "[b]on[/b]" if self.follow else "off"
        self.query_one("#log-controls", Static).update(
            f"follow {follow} (f)   open in $PAGER (v)   long lines wrap")

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
        self.show_controls()
        if self.follow:
            self.query_one(RichLog).scroll_end(animate=False)

    def action_pager(self) -> None:
        """The whole log in the user's pager; the dashboard comes back when it quits."""
        path = self.app.workspace / self.run.log_path if self.run and self.run.log_path else None
        if path is None or not path.exists():
            self.notify("this run has no log file yet", severity="warning")
            return
        pager = shlex.split(os.environ.get("PAGER") or "less") + [str(path)]
        try:
            with self.app.suspend():
                subprocess.run(pager)
        except (OSError, SuspendNotSupported) as error:
            self.notify(f"could not open the log in {pager[0]}: {error}", severity="error")


class SystemTab(PollingTab, VerticalScroll):
    """GPUs, the run's engine and this machine, for one run."""

    @dataclass
    class Loaded(Message):
        snapshot: SystemSnapshot

    def __init__(self, run_id: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        yield SystemPanel(id="system")

    @work(thread=True, exclusive=True, group="run-system", exit_on_error=False,
          description="read GPUs and system samples")
    def load(self) -> None:
        self.post_message(self.Loaded(load_system(self.app.workspace, self.run_id,
                                                  now=self.app.clock())))

    @on(Loaded)
    def show_snapshot(self, message: Loaded) -> None:
        self.query_one(SystemPanel).show(message.snapshot)
        self.rearm()


class EventsTab(RichLog):
    """The run's events, oldest first; each read brings only the events after the last."""

    def __init__(self, **kwargs) -> None:
        super().__init__(wrap=True, markup=False, **kwargs)
        self.last_id = 0

    def add(self, events: list[Event]) -> None:
        for event in events:
            if event.id <= self.last_id:
                continue  # an overlapping reply already showed it
            style = "bold red" if event.kind in ("error", "oom", "failed", "crashed") else ""
            clock = time.strftime("%H:%M:%S", time.localtime(event.t))
            self.write(Text(f"{clock}  {event.kind:<10} {event.message}", style=style))
            self.last_id = event.id


class ConfigTab(VerticalScroll):
    """The run's settings, one per line."""

    def compose(self) -> ComposeResult:
        yield Static(id="config")

    def show(self, config: dict) -> None:
        text = "\n".join(f"{k} = {v!r}" for k, v in sorted(config.items()))
        self.query_one("#config", Static).update(text or "(engine defaults)")
