"""One run: a status line and tabs for the live curves, the system panel, events, the
engine log and the config, each tab a widget with its own state and keys
(``widgets.curves_tab``, ``widgets.run_tabs``). The screen reads status, events and the
curves' series in one round trip and hands each tab its share."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from db.store import WorkspaceError
from sage_tui import control
from sage_tui.data import (RunSnapshot, SeriesRequest, failure_reason, load_run, read_log_tail,
                           run_exists)
from sage_tui.format import duration, number, status_text
from sage_tui.screens.base import COMMON_KEYS, SageScreen, is_shown
from sage_tui.widgets.curves_tab import CurvesTab, initial_points
from sage_tui.widgets.run_tabs import ConfigTab, EventsTab, LogTab, PollingTab, SystemTab

POLL_S = 1.0             # status, curves and events; the log and system tabs read on their own


class RunScreen(SageScreen):
    BINDINGS = [
        # The footer shows these in order: at 80 columns the first ones, then `?` for all.
        Binding("s", "stop", "Stop", id="run.stop"),
        Binding("r", "resume", "Resume", id="run.resume"),
        Binding("l,4", "tab('log')", "Log", id="run.log"),
        Binding("c", "checkpoints", "Checkpoints", id="run.checkpoints"),
        Binding("1", "tab('curves')", "Curves tab", show=False, id="run.tab_curves"),
        Binding("2", "tab('system')", "System tab", show=False, id="run.tab_system"),
        Binding("3", "tab('events')", "Events tab", show=False, id="run.tab_events"),
        Binding("5", "tab('config')", "Config tab", show=False, id="run.tab_config"),
        *COMMON_KEYS,
    ]

    @dataclass
    class Loaded(Message):
        snapshot: RunSnapshot

    @dataclass
    class RunMissing(Message):
        message: str

    def __init__(self, run_id: int, tab: str = "curves") -> None:
        super().__init__()
        self.run_id = run_id
        self.initial_tab = tab
        self.snapshot: RunSnapshot | None = None
        self.run_gone = False
        self.reason: str | None = None       # why a failed or crashed run ended, from its log

    def compose(self) -> ComposeResult:
        # Start reading at once: the first load runs while the widgets below mount.
        self.load([], initial_points(self.app.size.width), 0, (),
                  want_reason=True, first_group=self.initial_tab == "curves")
        yield Header()
        yield Static(id="run-status")
        with TabbedContent(id="run-tabs", initial=f"tab-{self.initial_tab}"):
            with TabPane("Curves", id="tab-curves"):
                yield CurvesTab(self.run_id, id="curves-tab")
            with TabPane("System", id="tab-system"):
                yield SystemTab(self.run_id, id="system-tab")
            with TabPane("Events", id="tab-events"):
                yield EventsTab(id="events")
            with TabPane("Log", id="tab-log"):
                yield LogTab(id="log-tab")
            with TabPane("Config", id="tab-config"):
                yield ConfigTab()
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.focus_tab_content()   # the first poll started in compose; its reply re-arms polling

    def focus_tab_content(self) -> None:
        """The shown tab's content takes the keys, so arrows and PageDown scroll it at once."""
        target = {"curves": "#plots-scroll", "events": "#events", "log": "#log"}.get(self.active_tab)
        if target:
            self.query_one(target).focus()

    def on_screen_resume(self) -> None:
        if self.paused:
            self.paused = False
            self.poll()
        for tab in self.query(PollingTab):
            tab.poll()

    @property
    def active_tab(self) -> str:
        return (self.query_one(TabbedContent).active or "tab-curves").removeprefix("tab-")

    # ------------------------------------------------------------- polling
    def rearm_poll(self) -> None:
        """One-shot timer re-armed after each completed poll, so polls never overlap; an
        extra poll (after an action) replaces the pending one."""
        if self.poll_timer is not None:
            self.poll_timer.stop()
        self.poll_timer = self.set_timer(POLL_S, self.poll)

    def poll(self) -> None:
        if self.poll_timer is not None:
            self.poll_timer.stop()
            self.poll_timer = None
        if not is_shown(self):
            self.paused = True  # hidden screens do not poll; on_screen_resume restarts
            return
        curves = self.curves
        on_curves = self.active_tab == "curves"
        self.load(curves.series_requests(self.snapshot) if on_curves else [], curves.plot_points,
                  self.last_event_id, tuple(curves.overlay_ids), self.reason is None,
                  first_group=on_curves and not curves.plotted_keys)

    @work(thread=True, exclusive=True, group="run-poll", exit_on_error=False,
          description="read the run's curves")
    def load(self, requests: list[SeriesRequest], points: int, events_after: int,
             overlay_ids: tuple[int, ...], want_reason: bool, first_group: bool = False) -> None:
        try:
            snapshot = load_run(self.app.workspace, self.run_id, requests, points, events_after,
                                overlay_ids, now=self.app.clock(), first_group=first_group)
        except WorkspaceError as error:
            if not run_exists(self.app.workspace, self.run_id):   # deleted, or never was
                self.post_message(self.RunMissing(str(error)))
                return
            raise
        row = snapshot.rows[self.run_id]
        if want_reason and row.status in ("failed", "crashed"):
            snapshot.reason = failure_reason(read_log_tail(self.app.workspace, row.run))
        if not get_current_worker().is_cancelled:   # a newer poll replaced this one
            self.post_message(self.Loaded(snapshot))

    @on(Loaded)
    def show_snapshot(self, message: Loaded) -> None:
        snapshot = self.snapshot = message.snapshot
        if snapshot.reason:
            self.reason = snapshot.reason
        self.curves.take(snapshot)
        self.show_status()
        self.query_one(EventsTab).add(snapshot.events)
        self.query_one(LogTab).set_run(snapshot.rows[self.run_id].run)
        self.rearm_poll()

    @on(CurvesTab.ReadNeeded)
    def read_needed(self) -> None:
        self.poll()

    @property
    def curves(self) -> CurvesTab:
        return self.query_one(CurvesTab)

    @on(RunMissing)
    def run_missing(self, message: RunMissing) -> None:
        """One message, then back to the runs list; a second read in flight says nothing."""
        if self.run_gone:
            return
        self.run_gone = True
        self.notify(f"there is no run {self.run_id} in this workspace (deleted?)", severity="error")
        if self.app.screen is self:
            self.app.pop_screen()

    def show_status(self) -> None:
        row = self.snapshot.rows[self.run_id]
        run, status = row.run, row.status
        kind = "" if run.kind == "train" else f" ({run.kind})"
        parts = [f"{run.id} [b]{run.name}[/b]{kind}", status_text(status).markup,
                 f"step {run.step}" + (f"/{run.total_steps}" if run.total_steps else "")]
        if run.epoch is not None:
            parts.append(f"ep {run.epoch:.1f}")
        if run.progress is not None and not run.total_steps:
            parts.append(f"{run.progress * 100:.0f}%")
        if status == "running" and run.eta_s:
            parts.append(f"ETA {duration(run.eta_s)}")
        if row.best is not None:   # an evaluation's score so far; a training run's best validation
            parts.append(f"{'pass@2' if run.kind == 'eval' else 'best'} {number(row.best, 3)}")
        if run.device and run.device != "auto":   # "auto" is a request, not a device
            parts.append(run.device)
        if status in ("failed", "crashed"):
            reason = self.reason or run.message or (
                "engine process gone" if status == "crashed" else "no reason recorded")
            parts.append(f"— {reason} ([b]l[/b] log)")
        elif status == "unresponsive":
            parts.append(f"— engine pid {run.pid} still owns the run but stopped reporting "
                         f"(continue it: kill -CONT {run.pid}; end it: kill {run.pid})")
        elif run.message:
            parts.append(f"— {run.message}")
        self.query_one("#run-status", Static).update("  ".join(parts))
        self.query_one(ConfigTab).show(run.config)

    @property
    def last_event_id(self) -> int:
        return self.query_one(EventsTab).last_id

    # ------------------------------------------------------------- actions
    def action_back(self) -> None:
        if not self.curves.hide_cursor():
            self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = f"tab-{tab}"

    @on(TabbedContent.TabActivated)
    def tab_activated(self) -> None:
        self.focus_tab_content()
        if self.active_tab == "curves":
            self.poll()

    def action_stop(self) -> None:
        self.act(partial(control.stop_run, self.app.workspace, self.run_id))

    def action_resume(self) -> None:
        self.reason = None
        self.act(partial(control.resume_run, self.app.workspace, self.run_id))

    def action_checkpoints(self) -> None:
        self.app.open_checkpoints(self.run_id)
