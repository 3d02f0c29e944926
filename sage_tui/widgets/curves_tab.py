"""The curves tab of a run: one plot per metric key of the shown group, smoothed, over
step, epoch or time, with other runs overlaid, a step cursor and a log scale for
losses. It holds the series it has read and says what to read next; the run screen's
read (one round trip for status, events and curves) feeds it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ItemGrid, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static

from sage_tui.data import FULL_READ_ROWS, METRIC_GROUPS, RunSnapshot, SeriesRequest, keys_by_group
from sage_tui.screens.overlay import OverlayPicker
from sage_tui.series import Series
from sage_tui.widgets.curve import (X_AXES, CurvePlot, PlotLine, PlotSettings, baseline_key,
                                     plotted_keys)

WINDOWS = (None, 100, 1_000, 10_000, 100_000)   # "last N steps"; None = all
SMOOTHING_STEP = 0.1
PLOT_MIN_WIDTH = 60      # plots side by side from 120 columns
PLOT_MIN_HEIGHT = 9
CURSOR_STEP = 0.02       # [ and ] move the step cursor by 2% of the shown range
GROUP_TITLES = dict(METRIC_GROUPS)


def plot_id(key: str) -> str:
    return "plot-" + re.sub(r"[^A-Za-z0-9_-]", "_", key)


class CurvesTab(Vertical):
    BINDINGS = [
        Binding("g", "next_group", "Next group of curves", show=False, id="curves.group"),
        Binding("o", "overlay", "Overlay other runs", show=False, id="curves.overlay"),
        Binding("plus,equals_sign", "smoothing(1)", "More smoothing", show=False, id="curves.smooth_more"),
        Binding("minus", "smoothing(-1)", "Less smoothing", show=False, id="curves.smooth_less"),
        Binding("m", "toggle_smoothing", "Smoothing on/off", show=False, id="curves.smoothing"),
        Binding("x", "next_x_axis", "X axis: step, epoch, time", show=False, id="curves.x_axis"),
        Binding("w", "next_window", "Last N steps", show=False, id="curves.window"),
        Binding("left_square_bracket", "cursor(-1)", "Cursor back (values at a step)", show=False,
                id="curves.cursor_back"),
        Binding("right_square_bracket", "cursor(1)", "Cursor forward", show=False, id="curves.cursor_on"),
        Binding("L", "toggle_log_scale", "Log scale for losses", show=False, id="curves.log_scale"),
    ]

    @dataclass
    class ReadNeeded(Message):
        """The tab needs series it does not hold (a new group, axis, window or overlay)."""

    def __init__(self, run_id: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id
        self.settings = PlotSettings()
        self.last_smoothing = self.settings.smoothing
        self.keys: list[str] = []
        self.group: str | None = None
        self.plotted_keys: list[str] = []
        self.overlay_ids: list[int] = []
        self.series: dict[tuple[int, str], Series] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="curve-controls")
        with VerticalScroll(id="plots-scroll"):
            yield ItemGrid(id="plots", min_column_width=PLOT_MIN_WIDTH)

    def on_mount(self) -> None:
        self.show_controls()

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

    # ------------------------------------------------------------- reading
    @property
    def plot_points(self) -> int:
        """Two points per character column of one plot: all a terminal can show."""
        width = self.query_one("#plots").size.width or self.app.size.width
        return initial_points(width)

    def series_requests(self, snapshot: RunSnapshot | None) -> list[SeriesRequest]:
        """What to read: the shown group's keys for this run and each overlaid run (and
        their epoch series for the epoch axis), each with the cursor held."""
        keys = list(self.plotted_keys)
        if self.settings.x_axis == "epoch" and "epoch" not in keys:
            keys.append("epoch")
        requests = []
        for run_id in (self.run_id, *self.overlay_ids):
            step_min = None
            if self.settings.window and snapshot is not None:
                row = snapshot.rows.get(run_id)
                step_min = max(0, row.run.step - self.settings.window) if row else None
            for key in keys:
                series = self.series.get((run_id, key))
                held = series is not None and len(series.steps) <= FULL_READ_ROWS
                requests.append(SeriesRequest(
                    run_id, key, series.last_step if held else None,
                    series.revision if held else -1, step_min))
        return requests

    def take(self, snapshot: RunSnapshot) -> None:
        """The rows a read brought: extend the series held, redraw what changed."""
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

    # ------------------------------------------------------------- drawing
    def rebuild_plots(self) -> None:
        """One plot per key of the shown group; rebuilt when the group or the keys change."""
        groups = keys_by_group(self.keys)
        if self.group not in groups:
            self.group = next(iter(groups), None)
        wanted = groups.get(self.group, [])
        # Baselines are no plots of their own (keys_by_group leaves them out), but their
        # series are read to draw each one as a line on its figure's plot.
        wanted = wanted + [b for b in map(baseline_key, wanted) if b in self.keys]
        if wanted != self.plotted_keys:
            self.plotted_keys = wanted
            grid = self.query_one("#plots", ItemGrid)
            grid.remove_children()
            grid.mount(*[CurvePlot(key, id=plot_id(key)) for key in plotted_keys(wanted)])
            self.call_after_refresh(self.size_plots)
            if any((self.run_id, key) not in self.series for key in wanted):
                self.post_message(self.ReadNeeded())  # new plots need their series
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

    # ------------------------------------------------------------- actions
    def hide_cursor(self) -> bool:
        """esc first hides the step cursor; True when there was one."""
        if self.settings.cursor is None:
            return False
        self.settings.cursor = None
        self.redraw_all()
        return True

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
            self.post_message(self.ReadNeeded())

    def action_next_window(self) -> None:
        self.settings.window = WINDOWS[(WINDOWS.index(self.settings.window) + 1) % len(WINDOWS)]
        self.series.clear()  # a new range is read afresh, downsampled for it
        self.redraw_all()
        self.post_message(self.ReadNeeded())

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
            self.post_message(self.ReadNeeded())

        self.app.push_screen(OverlayPicker(self.run_id, self.overlay_ids), chosen)


def initial_points(width: int) -> int:
    """Points per series for plots sharing ``width`` columns (two per column)."""
    columns = max(1, width // PLOT_MIN_WIDTH)
    return max(80, 2 * (width // columns))
