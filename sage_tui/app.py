"""The SAGE TUI application: screens, the runs poller, notifications, commands and the
one place where worker errors become messages."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.message import Message
from textual.worker import Worker, WorkerState, get_current_worker

from sage_tui import control
from sage_tui.data import RunRow, load_runs
from sage_tui.screens.checkpoints import CheckpointsScreen
from sage_tui.screens.compare import CompareScreen
from sage_tui.screens.help import HelpScreen
from sage_tui.screens.new_run import NewRunScreen
from sage_tui.screens.notifications import Notice, NotificationsScreen
from sage_tui.screens.run import RunScreen
from sage_tui.screens.runs import RunsScreen
from sage_tui.screens.system import SystemScreen
from sage_tui.screens.tasks import TasksScreen

POLL_S = 1.0           # runs table while it is on screen
BACKGROUND_POLL_S = 2.0  # statuses for notifications while another screen is shown
RETRY_S = 3.0
ENDED = ("finished", "failed", "crashed", "stopped")


class SageCommands(Provider):
    """Command-palette entries: the app's actions and one "open run" per run."""

    def commands(self) -> list[tuple[str, Callable, str]]:
        app: SageApp = self.app  # type: ignore[assignment]
        entries = [
            ("New run", app.action_new_run, "open the new-run form"),
            ("Runs", app.action_show_runs, "back to the list of runs"),
            ("System", app.action_system, "GPUs, CPU, RAM and disk of this machine"),
            ("Keys", app.action_help, "the keys of this screen"),
            ("Notifications", app.action_notifications, "every notification of this session"),
        ]
        for row in app.run_rows:
            entries.append((f"Open run {row.run.id} {row.run.name}", partial(app.open_run, row.run.id),
                            f"{row.run.kind}, {row.status}"))
        return entries

    async def discover(self) -> Hits:
        for name, callback, help_text in self.commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self.commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


class SageApp(App):
    TITLE = "SAGE TUI"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {SageCommands}
    BINDINGS = [
        Binding("question_mark,f1", "help", "Keys", id="app.help"),
        Binding("N", "notifications", "Notification history", show=False, id="app.notifications"),
        Binding("ctrl+q", "quit", "Quit", show=False, id="app.ctrl_quit"),
    ]

    @dataclass
    class RunsLoaded(Message):
        rows: list[RunRow]

    def __init__(self, workspace: Path, open_run: int | None = None,
                 clock: Callable[[], float] = time.time, watch_runs: bool = True) -> None:
        super().__init__()
        self.workspace = Path(workspace)
        self.initial_run = open_run
        self.clock = clock            # tests freeze it so "3m ago" does not drift
        self.watch_runs = watch_runs  # tests of frozen data turn the poller's re-arming off
        self.sub_title = str(workspace)
        self.run_rows: list[RunRow] = []
        self.last_statuses: dict[int, str] = {}
        self.poll_timer = None
        self.notices: list[Notice] = []   # every notification of the session
        self.demo_evaluated: set[int] = set()

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())
        self.poll()
        if self.initial_run is not None:
            self.open_run(self.initial_run)

    # --------------------------------------------------------- runs poller
    @work(thread=True, exclusive=True, group="runs-poll", exit_on_error=False,
          description="read the runs table")
    def poll(self) -> None:
        rows = load_runs(self.workspace, self.clock())
        if not get_current_worker().is_cancelled:   # a newer poll replaced this one
            self.post_message(self.RunsLoaded(rows))

    @on(RunsLoaded)
    def runs_loaded(self, message: RunsLoaded) -> None:
        if not self.screen_stack:
            return   # the app is closing
        self.run_rows = message.rows
        self.notify_status_changes(message.rows)
        runs_screen = self.screen if isinstance(self.screen, RunsScreen) else None
        if runs_screen is not None:
            runs_screen.show_rows(message.rows)
        if self.poll_timer is not None:
            self.poll_timer.stop()  # an extra poll (after an action) replaces the pending one
        if self.watch_runs:
            # One-shot timer re-armed after each completed poll: polls never overlap.
            self.poll_timer = self.set_timer(POLL_S if runs_screen else BACKGROUND_POLL_S, self.poll)

    def notify_status_changes(self, rows: list[RunRow]) -> None:
        """A notification when a run that was live finishes, fails, crashes or stops."""
        for row in rows:
            before = self.last_statuses.get(row.run.id)
            if before == "running" and row.status == "unresponsive":
                self.notify(f"run {row.run.id} {row.run.name}: its engine (pid {row.run.pid}) still owns "
                            f"it but stopped reporting", title="run unresponsive", severity="warning",
                            timeout=10)
            if before in ("running", "queued", "unresponsive") and row.status in ENDED:
                severity = "information" if row.status in ("finished", "stopped") else "error"
                detail = f": {row.run.message}" if row.run.message else ""
                hint = " (l on the run shows its log)" if row.status in ("failed", "crashed") else ""
                self.notify(f"run {row.run.id} {row.run.name} {row.status}{detail}{hint}",
                            title=f"run {row.status}", severity=severity, timeout=10)
            if row.status == "crashed" and row.run.status == "running":
                self.record_crash(row.run.id)
            if (row.status == "finished" and row.run.name == control.DEMO_NAME
                    and row.run.kind == "train" and row.run.id not in self.demo_evaluated):
                self.demo_evaluated.add(row.run.id)   # once: a stale poll may repeat the change
                self.evaluate_demo(row.run.id)
            self.last_statuses[row.run.id] = row.status

    @work(thread=True, group="record-crash", exit_on_error=False, description="record a crash")
    def record_crash(self, run_id: int) -> None:
        control.record_crash(self.workspace, run_id)

    @work(thread=True, group="demo-eval", exit_on_error=False, description="evaluate the demo")
    def evaluate_demo(self, run_id: int) -> None:
        """The demo ends with an evaluation, so its tasks can be browsed."""
        message = control.evaluate_demo(self.workspace, run_id)
        if message:
            self.call_from_thread(self.notify, f"demo finished: {message}", title="evaluation")
            self.call_from_thread(self.poll)

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notification is kept for the history screen (N) as well as shown."""
        self.notices.append(Notice(time.time(), title, str(message), severity))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def action_notifications(self) -> None:
        if not isinstance(self.screen, NotificationsScreen):
            self.push_screen(NotificationsScreen(self.notices))

    # ------------------------------------------------------------- screens
    def open_run(self, run_id: int, tab: str = "curves") -> None:
        if self.run_rows and run_id not in {row.run.id for row in self.run_rows}:
            self.notify(f"there is no run {run_id} in this workspace", severity="error")
            return
        self.push_screen(RunScreen(run_id, tab=tab))

    def open_checkpoints(self, run_id: int) -> None:
        self.push_screen(CheckpointsScreen(run_id))

    def open_tasks(self, evaluation_id: int) -> None:
        self.push_screen(TasksScreen(evaluation_id))

    def open_compare(self, evaluation_a: int, evaluation_b: int) -> None:
        self.push_screen(CompareScreen(evaluation_a, evaluation_b))

    def open_new_run(self, kind: str = "train", prefill: dict | None = None,
                     name: str = "") -> None:
        self.push_screen(NewRunScreen(kind=kind, prefill=prefill, name=name))

    def action_new_run(self) -> None:
        self.open_new_run()

    def action_show_runs(self) -> None:
        while not isinstance(self.screen, RunsScreen) and len(self.screen_stack) > 1:
            self.pop_screen()

    def action_system(self) -> None:
        self.push_screen(SystemScreen())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.report_worker_error(event.worker)

    def report_worker_error(self, worker: Worker) -> None:
        """The one place where a failed worker becomes a message to the user."""
        error = worker.error
        if error is None:
            return
        self.notify(f"{type(error).__name__}: {error}", title="error", severity="error", timeout=10)
        # A failed poll is retried: the database may be briefly locked or not yet created.
        if worker.group.endswith("-poll") and hasattr(worker.node, "poll"):
            worker.node.set_timer(RETRY_S, worker.node.poll)
