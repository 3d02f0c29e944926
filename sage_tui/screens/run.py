"""One run: status line; tabs for live curves (grouped, smoothed, overlaid), the
system panel, events, the engine log and the config. The curves live here; the other
tabs are widgets of their own (``widgets.run_tabs``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ItemGrid, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from db.store import WorkspaceError
from sage_tui import control
from sage_tui.data import (FULL_READ_ROWS, METRIC_GROUPS, RunSnapshot, SeriesRequest,
                           failure_reason, keys_by_group, load_run, read_log_tail, run_exists)
from sage_tui.format import duration, number, status_text
from sage_tui.series import Series
from sage_tui.screens.base import COMMON_KEYS, SageScreen, is_shown
from sage_tui.screens.overlay import OverlayPicker
from sage_tui.widgets.curve import (X_AXES, CurvePlot, PlotLine, PlotSettings, baseline_key,
                                     plotted_keys)
from sage_tui.widgets.run_tabs import ConfigTab, EventsTab, LogTab, PollingTab, SystemTab

POLL_S = 1.0             # status, curves and events; the log and system tabs read on their own
WINDOWS = (None, 100, 1_000, 10_000, 100_000)   # "last N steps"; None = all
SMOOTHING_STEP = 0.1
PLOT_MIN_WIDTH = 60      # plots side by side from 120 columns
PLOT_MIN_HEIGHT = 9
CURSOR_STEP = 0.02       # [ and ] move the step cursor by 2% of the shown range
TABS = ("curves", "system", "events", "log", "config")
GROUP_TITLES = dict(METRIC_GROUPS)


def plot_id(key: str) -> str:
    return "plot-" + re.sub(r"[^A-Za-z0-9_-]", "_", key)


class RunScreen(SageScreen):
    BINDINGS = [
        # The footer shows these in order: at 80 columns the first ones, then `?` for all.
        Binding("s", "stop", "Stop", id="run.stop"),
        Binding("r", "resume", "Resume", id="run.resume"),
        Binding("l,4", "tab('log')", "Log", id="run.log"),
        Binding("c", "checkpoints", "Checkpoints", id="run.checkpoints"),
        Binding("g", "next_group", "Group", id="run.group"),
        Binding("o", "overlay", "Overlay", show=False, id="run.overlay"),
        Binding("plus,equals_sign", "smoothing(1)", "More smoothing", show=False, id="run.smooth_more"),
        Binding("minus", "smoothing(-1)", "Less smoothing", show=False, id="run.smooth_less"),
        Binding("m", "toggle_smoothing", "Smoothing on/off", show=False, id="run.smoothing"),
        Binding("x", "next_x_axis", "X axis: step, epoch, time", show=False, id="run.x_axis"),
        Binding("w", "next_window", "Last N steps", show=False, id="run.window"),
        Binding("left_square_bracket", "cursor(-1)", "Cursor back (values at a step)", show=False,
                id="run.cursor_back"),
        Binding("right_square_bracket", "cursor(1)", "Cursor forward", show=False, id="run.cursor_on"),
        Binding("L", "toggle_log_scale", "Log scale for losses", show=False, id="run.log_scale"),
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
        self.settings = PlotSettings()
        self.last_smoothing = self.settings.smoothing
        self.keys: list[str] = []
        self.group: str | None = None
        self.plotted_keys: list[str] = []
        self.overlay_ids: list[int] = []
        self.series: dict[tuple[int, str], Series] = {}
        self.snapshot: RunSnapshot | None = None
        self.run_gone = False
        self.reason: str | None = None       # why a failed or crashed run ended, from its log

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
                yield SystemTab(self.run_id, id="system-tab")
            with TabPane("Events", id="tab-events"):
                yield EventsTab(id="events")
            with TabPane("Log", id="tab-log"):
                yield LogTab(id="log-tab")
            with TabPane("Config", id="tab-config"):
                yield ConfigTab()
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.show_controls()
        self.focus_tab_content()   # the first poll started in compose; its reply re-arms polling

    def focus_tab_content(self) -> None:
        """The shown tab's content takes the keys, so arrows and PageDown scroll it at once."""
        target = {"curves": "#plots-scroll", "events": "#events", "log": "#log"}.get(self.active_tab)
        if target:
            self.query_one(target).focus()

    def on_resize(self) -> None:
        self.size_plots()

    def size_plots(self) -> None:
        """Plots share the height there is: at most two rows of plots on screen at once
        (more scroll), never under PLOT_MIN_HEIGHT rows."""
        grid = self.query_one("#plots", ItemGrid)
        plots = list(self.query(CurvePlot))
        if not plots:
            return
        width = grid.size.width or self.app.size.width
        columns = max(1, width // PLOT_MIN_WIDTH)
        rows_on_screen = min(2, -(-len(plots) // columns))
        available = self.query_one("#plots-scroll").size.height or (self.app.size.height - 8)
        height = max(PLOT_MIN_HEIGHT, available // rows_on_screen)
        grid.styles.grid_rows = str(height)
        for plot in plots:
            plot.styles.height = height

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

    def poll(self) -> None:
        if self.poll_timer is not None:
            self.poll_timer.stop()
            self.poll_timer = None
        if not is_shown(self):
            self.paused = True  # hidden screens do not poll; on_screen_resume restarts
            return
        self.load(self.series_requests(), self.plot_points, self.last_event_id,
                  tuple(self.overlay_ids), self.reason is None,
                  first_group=self.active_tab == "curves" and not self.plotted_keys)

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
        self.query_one(EventsTab).add(snapshot.events)
        self.query_one(LogTab).set_run(snapshot.rows[self.run_id].run)
        self.rearm_poll()

    @on(RunMissing)
    def run_missing(self, message: RunMissing) -> None:
        """One message, then back to the runs list; a second read in flight says nothing."""
        if self.run_gone:
            return
        self.run_gone = True
        self.notify(f"there is no run {self.run_id} in this workspace (deleted?)", severity="error")
        if self.app.screen is self:
            self.app.pop_screen()

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
            grid.mount(*[CurvePlot(key, id=plot_id(key)) for key in plotted_keys(wanted)])
            self.call_after_refresh(self.size_plots)
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
                                          self.series.get((run_id, "epoch")),
                                          self.series.get((run_id, baseline_key(plot.key)))))
            plot.show(lines, self.settings)

    def show_controls(self) -> None:
        groups = list(keys_by_group(self.keys))
        position = f" {groups.index(self.group) + 1}/{len(groups)}" if self.group in groups else ""
        title = GROUP_TITLES.get(self.group, "no metrics yet")
        smoothing = f"{self.settings.smoothing:.1f}" if self.settings.smoothing else "off"
        window = f"last {self.settings.window:,}" if self.settings.window else "all steps"
        overlay = ",".join(map(str, self.overlay_ids)) or "none"
        cursor = "  cursor ([ ]) esc hides" if self.settings.cursor is not None else ""
        log = "  log y (L)" if self.settings.log_scale else ""
        self.query_one("#curve-controls", Static).update(
            f"[b]{title}[/b]{position} (g)  smooth {smoothing} (+/-)  x:{self.settings.x_axis} (x)  "
            f"{window} (w)  overlay:{overlay} (o){log}{cursor}")

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
        if run.device and run.device != "auto":   # "auto" is a request, not a device
            parts.append(run.device)
        if status in ("failed", "crashed"):
            reason = self.reason or run.message or (
                "engine process gone" if status == "crashed" else "no reason recorded")
            parts.append(f"— {reason} ([b]l[/b] log)")
        elif run.message:
            parts.append(f"— {run.message}")
        self.query_one("#run-status", Static).update("  ".join(parts))
        self.query_one(ConfigTab).show(run.config)

    @property
    def last_event_id(self) -> int:
        return self.query_one(EventsTab).last_id

    # ------------------------------------------------------------- actions
    def action_back(self) -> None:
        if self.settings.cursor is not None:   # esc first hides the cursor
            self.settings.cursor = None
            self.redraw_all()
            return
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

    def action_cursor(self, direction: int) -> None:
        """A step cursor: each plot's title reads every run's value at that step."""
        if self.settings.cursor is None:
            self.settings.cursor = 1.0 if direction < 0 else 0.0
        else:
            self.settings.cursor = min(1.0, max(0.0, self.settings.cursor + direction * CURSOR_STEP))
        self.redraw_all()

    def action_toggle_log_scale(self) -> None:
        self.settings.log_scale = not self.settings.log_scale
        self.redraw_all()

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
