"""One run: status line; tabs for live curves (grouped, smoothed, overlaid), the
system panel, events, the engine log and the config."""

from __future__ import annotations

import re
import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ItemGrid, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.worker import get_current_worker
from textual.widgets import (Footer, Header, RichLog, SelectionList, Static, TabbedContent,
                             TabPane)

from sage_tui import control
from sage_tui.workers import ReportsWorkerErrors
from sage_tui.data import (FULL_READ_ROWS, METRIC_GROUPS, RunSnapshot, SeriesRequest,
                           SystemSnapshot, failure_reason, is_traceback_line, keys_by_group,
                           load_run, load_system, read_log_tail)
from sage_tui.format import duration, number, status_text
from sage_tui.series import Series
from sage_tui.widgets.curve import X_AXES, CurvePlot, PlotLine, PlotSettings
from sage_tui.widgets.system import SystemPanel

POLL_S = 1.0
SLOW_POLL_S = 2.0        # system panel and log tail
WINDOWS = (None, 100, 1_000, 10_000, 100_000)   # "last N steps"; None = all
SMOOTHING_STEP = 0.1
PLOT_MIN_WIDTH = 60      # plots side by side from 120 columns
TABS = ("curves", "system", "events", "log", "config")
GROUP_TITLES = dict(METRIC_GROUPS)


def plot_id(key: str) -> str:
    return "plot-" + re.sub(r"[^A-Za-z0-9_-]", "_", key)


class OverlayPicker(ModalScreen[list[int] | None]):
    """Choose the runs whose curves are drawn over this run's."""

    BINDINGS = [
        # Priority: the list would otherwise take enter as "toggle"; space toggles.
        Binding("enter", "apply", "Apply", priority=True, id="overlay.apply"),
        Binding("escape", "cancel", "Cancel", id="overlay.cancel"),
    ]

    def __init__(self, run_id: int, chosen: list[int]) -> None:
        super().__init__()
        self.run_id = run_id
        self.chosen = chosen

    def compose(self) -> ComposeResult:
        with Vertical(id="overlay-box"):
            yield Static("Overlay runs: [b]space[/b] toggles, [b]enter[/b] applies, [b]esc[/b] cancels")
            yield SelectionList[int](
                *[(f"{row.run.id:>4}  {row.run.name}  ({row.run.kind}, {row.status})", row.run.id,
                   row.run.id in self.chosen)
                  for row in self.app.run_rows if row.run.id != self.run_id and row.run.kind == "train"],
                id="overlay-list")

    def action_apply(self) -> None:
        self.dismiss(list(self.query_one(SelectionList).selected))

    def action_cancel(self) -> None:
        self.dismiss(None)


class RunScreen(ReportsWorkerErrors, Screen):
    BINDINGS = [
        Binding("escape", "back", "Back", id="run.back"),
        Binding("g", "next_group", "Group", id="run.group"),
        Binding("plus,equals_sign", "smoothing(1)", "Smooth+", id="run.smooth_more"),
        Binding("minus", "smoothing(-1)", "Smooth-", id="run.smooth_less"),
        Binding("m", "toggle_smoothing", "Smooth on/off", show=False, id="run.smoothing"),
        Binding("x", "next_x_axis", "X axis", id="run.x_axis"),
        Binding("w", "next_window", "Last N", id="run.window"),
        Binding("o", "overlay", "Overlay", id="run.overlay"),
        Binding("s", "stop", "Stop", id="run.stop"),
        Binding("r", "resume", "Resume", id="run.resume"),
        Binding("l", "tab('log')", "Log", id="run.log"),
        Binding("c", "checkpoints", "Checkpoints", id="run.checkpoints"),
        Binding("1", "tab('curves')", "Curves tab", show=False, id="run.tab_curves"),
        Binding("2", "tab('system')", "System tab", show=False, id="run.tab_system"),
        Binding("3", "tab('events')", "Events tab", show=False, id="run.tab_events"),
        Binding("4", "tab('log')", "Log tab", show=False, id="run.tab_log"),
        Binding("5", "tab('config')", "Config tab", show=False, id="run.tab_config"),
        Binding("q", "app.quit", "Quit", show=False, id="run.quit"),
    ]

    class Loaded(Message):
        def __init__(self, snapshot: RunSnapshot) -> None:
            super().__init__()
            self.snapshot = snapshot

    class LogLoaded(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class SystemLoaded(Message):
        def __init__(self, snapshot: SystemSnapshot) -> None:
            super().__init__()
            self.snapshot = snapshot

    def __init__(self, run_id: int, tab: str = "curves") -> None:
        super().__init__()
        self.run_id = run_id
        self.initial_tab = tab
        self.settings = PlotSettings()
        self.last_smoothing = self.settings.smoothing
        self.keys: list[str] = []
        self.group: str | None = None
        self.plotted_keys: list[str] = []
        self.overlay_ids: list[int] = []
        self.series: dict[tuple[int, str], Series] = {}
        self.last_event_id = 0
        self.snapshot: RunSnapshot | None = None
        self.reason: str | None = None       # why a failed or crashed run ended, from its log
        self.log_text = ""
        self.poll_timer = None
        self.slow_timer = None
        self.paused = False

    def compose(self) -> ComposeResult:
        # Start reading at once: the first load runs while the widgets below mount.
        width = self.app.size.width
        self.load([], max(80, 2 * (width // max(1, width // PLOT_MIN_WIDTH))), 0, (),
                  want_reason=True, first_group=self.initial_tab == "curves")
        yield Header()
        yield Static(id="run-status")
        with TabbedContent(id="run-tabs", initial=f"tab-{self.initial_tab}"):
            with TabPane("Curves", id="tab-curves"):
                yield Static(id="curve-controls")
                with VerticalScroll(id="plots-scroll"):
                    yield ItemGrid(id="plots", min_column_width=PLOT_MIN_WIDTH)
            with TabPane("System", id="tab-system"):
                with VerticalScroll():
                    yield SystemPanel(id="system")
            with TabPane("Events", id="tab-events"):
                yield RichLog(id="events", wrap=True, markup=False)
            with TabPane("Log", id="tab-log"):
                yield RichLog(id="log", wrap=False, markup=False)
            with TabPane("Config", id="tab-config"):
                with VerticalScroll():
                    yield Static(id="config")
        yield Footer()

    def on_mount(self) -> None:
        self.show_controls()
        self.poll_slow()   # the first poll started in compose; its reply re-arms polling

    def on_screen_resume(self) -> None:
        if self.paused:
            self.paused = False
            self.poll()
            self.poll_slow()

    @property
    def active_tab(self) -> str:
        return (self.query_one(TabbedContent).active or "tab-curves").removeprefix("tab-")

    # ------------------------------------------------------------- polling
    @property
    def plot_points(self) -> int:
        """Two points per character column of one plot: all a terminal can show."""
        width = self.query_one("#plots").size.width or self.app.size.width
        columns = max(1, width // PLOT_MIN_WIDTH)
        return max(80, 2 * (width // columns))

    def series_requests(self) -> list[SeriesRequest]:
        """What to read: the shown group's keys for this run and each overlaid run (and
        their epoch series for the epoch axis), each with the cursor held."""
        if self.active_tab != "curves":
            return []
        keys = list(self.plotted_keys)
        if self.settings.x_axis == "epoch" and "epoch" not in keys:
            keys.append("epoch")
        requests = []
        for run_id in (self.run_id, *self.overlay_ids):
            step_min = None
            if self.settings.window and self.snapshot is not None:
                row = self.snapshot.rows.get(run_id)
                step_min = max(0, row.run.step - self.settings.window) if row else None
            for key in keys:
                series = self.series.get((run_id, key))
                held = series is not None and len(series.steps) <= FULL_READ_ROWS
                requests.append(SeriesRequest(
                    run_id, key, series.last_step if held else None,
                    series.revision if held else -1, step_min))
        return requests

    def rearm_poll(self) -> None:
        """One-shot timer re-armed after each completed poll, so polls never overlap; an
        extra poll (after an action) replaces the pending one."""
        if self.poll_timer is not None:
            self.poll_timer.stop()
        self.poll_timer = self.set_timer(POLL_S, self.poll)

    def rearm_slow_poll(self) -> None:
        if self.slow_timer is not None:
            self.slow_timer.stop()
        self.slow_timer = self.set_timer(SLOW_POLL_S, self.poll_slow)

    def poll(self) -> None:
        if self.poll_timer is not None:
            self.poll_timer.stop()
            self.poll_timer = None
        if not self.is_current:
            self.paused = True  # hidden screens do not poll; on_screen_resume restarts
            return
        self.load(self.series_requests(), self.plot_points, self.last_event_id,
                  tuple(self.overlay_ids), self.reason is None,
                  first_group=self.active_tab == "curves" and not self.plotted_keys)

    @work(thread=True, exclusive=True, group="run-poll", exit_on_error=False,
          description="read the run's curves")
    def load(self, requests: list[SeriesRequest], points: int, events_after: int,
             overlay_ids: tuple[int, ...], want_reason: bool, first_group: bool = False) -> None:
        snapshot = load_run(self.app.workspace, self.run_id, requests, points, events_after,
                            overlay_ids, now=self.app.clock(), first_group=first_group)
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
        changed_keys = set()
        for update in snapshot.updates:
            held = self.series.get((update.run_id, update.key))
            if update.reset or held is None:
                held = self.series[(update.run_id, update.key)] = Series(
                    update.key, revision=update.chunk.revision)
            held.extend_after(update.chunk.steps, update.chunk.values, update.chunk.wall_times)
            changed_keys.add("*" if update.key == "epoch" else update.key)
        if snapshot.keys != self.keys:
            self.keys = snapshot.keys
            self.rebuild_plots()
        elif changed_keys:
            self.draw(None if "*" in changed_keys else changed_keys)
        self.show_status()
        self.show_events(snapshot)
        self.rearm_poll()

    # One slower loop for what costs more and matters only when its tab is shown.
    def poll_slow(self) -> None:
        if self.slow_timer is not None:
            self.slow_timer.stop()
            self.slow_timer = None
        if not self.is_current:
            self.paused = True
            return
        tab = self.active_tab
        if tab == "system":
            self.load_system()
        elif tab == "log" and self.snapshot is not None:
            self.load_log(self.snapshot.rows[self.run_id].run)
        else:
            self.rearm_slow_poll()

    @work(thread=True, exclusive=True, group="run-system", exit_on_error=False,
          description="read GPUs and system samples")
    def load_system(self) -> None:
        self.post_message(self.SystemLoaded(load_system(self.app.workspace, self.run_id,
                                                        now=self.app.clock())))

    @work(thread=True, exclusive=True, group="run-log", exit_on_error=False,
          description="read the engine log")
    def load_log(self, run) -> None:
        self.post_message(self.LogLoaded(read_log_tail(self.app.workspace, run)))

    @on(SystemLoaded)
    def show_system(self, message: SystemLoaded) -> None:
        self.query_one(SystemPanel).show(message.snapshot)
        self.rearm_slow_poll()

    @on(LogLoaded)
    def show_log(self, message: LogLoaded) -> None:
        self.rearm_slow_poll()
        if message.text == self.log_text:
            return
        self.log_text = message.text
        log = self.query_one("#log", RichLog)
        log.clear()
        for line in message.text.splitlines():
            log.write(Text(line, style=log_style(line)))
        log.scroll_end(animate=False)

    # ------------------------------------------------------------- drawing
    def rebuild_plots(self) -> None:
        """One plot per key of the shown group; rebuilt when the group or the keys change."""
        groups = keys_by_group(self.keys)
        if self.group not in groups:
            self.group = next(iter(groups), None)
        wanted = groups.get(self.group, [])
        if wanted != self.plotted_keys:
            self.plotted_keys = wanted
            grid = self.query_one("#plots", ItemGrid)
            grid.remove_children()
            grid.mount(*[CurvePlot(key, id=plot_id(key)) for key in wanted])
            if any((self.run_id, key) not in self.series for key in wanted):
                self.call_after_refresh(self.poll)  # new plots need their series
        self.show_controls()
        self.draw()

    def draw(self, keys: set[str] | None = None) -> None:
        for plot in self.query(CurvePlot):
            if keys is not None and plot.key not in keys:
                continue
            lines = []
            for run_id in (self.run_id, *self.overlay_ids):
                series = self.series.get((run_id, plot.key))
                if series is not None:
                    lines.append(PlotLine(f"run {run_id}", series,
                                          self.series.get((run_id, "epoch"))))
            plot.show(lines, self.settings)

    def show_controls(self) -> None:
        groups = list(keys_by_group(self.keys))
        position = f" {groups.index(self.group) + 1}/{len(groups)}" if self.group in groups else ""
        title = GROUP_TITLES.get(self.group, "no metrics yet")
        smoothing = f"{self.settings.smoothing:.1f}" if self.settings.smoothing else "off"
        window = f"last {self.settings.window:,}" if self.settings.window else "all steps"
        overlay = ",".join(map(str, self.overlay_ids)) or "none"
        self.query_one("#curve-controls", Static).update(
            f"[b]{title}[/b]{position} (g)  smooth {smoothing} (+/-)  x:{self.settings.x_axis} (x)  "
            f"{window} (w)  overlay:{overlay} (o)")

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
        if row.best is not None:
            parts.append(f"best {number(row.best, 3)}")
        if run.device:
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
        config = "\n".join(f"{k} = {v!r}" for k, v in sorted(run.config.items()))
        self.query_one("#config", Static).update(config or "(engine defaults)")

    def show_events(self, snapshot: RunSnapshot) -> None:
        events = self.query_one("#events", RichLog)
        for event in snapshot.events:
            if event.id <= self.last_event_id:
                continue  # an overlapping reply already showed it
            style = "bold red" if event.kind in ("error", "oom", "failed") else ""
            events.write(Text(f"{_clock(event.t)}  {event.kind:<10} {event.message}", style=style))
            self.last_event_id = event.id

    # ------------------------------------------------------------- actions
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_next_group(self) -> None:
        groups = list(keys_by_group(self.keys))
        if not groups:
            return
        index = groups.index(self.group) if self.group in groups else -1
        self.group = groups[(index + 1) % len(groups)]
        self.rebuild_plots()

    def action_smoothing(self, direction: int) -> None:
        weight = round(self.settings.smoothing + direction * SMOOTHING_STEP, 2)
        self.settings.smoothing = min(0.99, max(0.0, weight))
        self.redraw_all()

    def action_toggle_smoothing(self) -> None:
        if self.settings.smoothing:
            self.last_smoothing, self.settings.smoothing = self.settings.smoothing, 0.0
        else:
            self.settings.smoothing = self.last_smoothing or 0.6
        self.redraw_all()

    def action_next_x_axis(self) -> None:
        self.settings.x_axis = X_AXES[(X_AXES.index(self.settings.x_axis) + 1) % len(X_AXES)]
        self.redraw_all()
        if self.settings.x_axis == "epoch":
            self.poll()

    def action_next_window(self) -> None:
        self.settings.window = WINDOWS[(WINDOWS.index(self.settings.window) + 1) % len(WINDOWS)]
        self.series.clear()  # a new range is read afresh, downsampled for it
        self.redraw_all()
        self.poll()

    def redraw_all(self) -> None:
        self.show_controls()
        self.draw()

    def action_overlay(self) -> None:
        def chosen(run_ids: list[int] | None) -> None:
            if run_ids is None:
                return
            self.overlay_ids = sorted(run_ids)
            self.series = {k: v for k, v in self.series.items()
                           if k[0] == self.run_id or k[0] in self.overlay_ids}
            self.redraw_all()
            self.poll()

        self.app.push_screen(OverlayPicker(self.run_id, self.overlay_ids), chosen)

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = f"tab-{tab}"

    @on(TabbedContent.TabActivated)
    def tab_activated(self) -> None:
        self.poll_slow()
        if self.active_tab == "curves":
            self.poll()

    def action_stop(self) -> None:
        self.control(control.stop_run)

    def action_resume(self) -> None:
        self.reason = None
        self.control(control.resume_run)

    def action_checkpoints(self) -> None:
        self.app.open_checkpoints(self.run_id)

    @work(thread=True, group="control", exit_on_error=False, description="run control")
    def control(self, action) -> None:
        self.app.call_from_thread(self.notify, action(self.app.workspace, self.run_id))


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def log_style(line: str) -> str:
    """Tracebacks and errors stand out in the log tail."""
    if is_traceback_line(line) or " ERROR " in line:
        return "bold red"
    if " WARNING " in line:
        return "yellow"
    return ""
