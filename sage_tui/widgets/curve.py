"""A live metric curve: plotext, smoothed, downsampled to the widget's width."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from textual_plotext import PlotextPlot

from sage_tui.format import number
from sage_tui.series import Series, downsample

X_AXES = ("step", "epoch", "time")
LINE_COLORS = ("cyan", "orange", "green", "magenta", "red", "blue")


@dataclass
class PlotSettings:
    smoothing: float = 0.6          # debiased-EMA weight; 0 = raw only
    x_axis: str = "step"            # step | epoch | time
    window: int | None = None       # show only the last N steps; None = all


@dataclass
class PlotLine:
    label: str
    series: Series
    epochs: Series | None = None    # the run's "epoch" series, for the epoch x axis


def higher_is_better(key: str) -> bool:
    return any(word in key for word in ("acc", "exact", "pass", "per_s", "score"))


class CurvePlot(PlotextPlot):
    """One metric key: a line per run (the first is the run shown, the rest overlaid),
    the raw values faint behind the smoothed line, latest and best in the title."""

    DEFAULT_CSS = """
    CurvePlot { height: 9; min-height: 7; }
    """

    def __init__(self, key: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.key = key
        self.lines: list[PlotLine] = []
        self.settings = PlotSettings()

    def show(self, lines: list[PlotLine], settings: PlotSettings) -> None:
        self.lines = lines
        self.settings = settings
        self.redraw()

    def title_text(self) -> str:
        if not self.lines or not self.lines[0].series.steps:
            return f"{self.key} — waiting for data"
        series = self.lines[0].series
        best = series.best(higher_is_better(self.key))
        return f"{self.key}  latest {number(series.latest())}  best {number(best)}"

    def x_values(self, line: PlotLine) -> tuple[np.ndarray, str]:
        steps = np.asarray(line.series.steps, dtype=float)
        axis = self.settings.x_axis
        if axis == "time" and line.series.wall_times:
            wall = np.asarray(line.series.wall_times, dtype=float)
            return (wall - wall[0]) / 60.0, "minutes"
        if axis == "epoch" and line.epochs is not None and len(line.epochs.steps) > 1:
            return np.interp(steps, line.epochs.steps, line.epochs.values), "epoch"
        return steps, "step"

    def points(self, line: PlotLine, values: list[float], min_step: float | None
               ) -> tuple[list[float], list[float], str]:
        x, label = self.x_values(line)
        y = np.asarray(values, dtype=float)
        if min_step is not None:
            visible = np.asarray(line.series.steps) >= min_step
            x, y = x[visible], y[visible]
        # Two points per character column is all a terminal can show.
        x, y = downsample(x, y, max(16, 2 * max(self.size.width, 40)))
        return x.tolist(), y.tolist(), label

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title_text())
        min_step = None
        if self.settings.window and self.lines and self.lines[0].series.steps:
            min_step = self.lines[0].series.steps[-1] - self.settings.window
        x_label = self.settings.x_axis
        smoothing = self.settings.smoothing
        for index, line in enumerate(self.lines):
            if not line.series.steps:
                continue
            color = LINE_COLORS[index % len(LINE_COLORS)]
            raw_x, raw_y, x_label = self.points(line, line.series.values, min_step)
            if smoothing > 0 and len(line.series.values) > 2:
                # The raw line stays visible, faint, behind the smoothed one.
                plt.plot(raw_x, raw_y, marker="braille", color="gray")
                smooth_x, smooth_y, _ = self.points(line, line.series.smoothed(smoothing), min_step)
                plt.plot(smooth_x, smooth_y, marker="braille", color=color,
                         label=line.label if len(self.lines) > 1 else None)
            else:
                plt.plot(raw_x, raw_y, marker="braille", color=color,
                         label=line.label if len(self.lines) > 1 else None)
        plt.xlabel(x_label)
        self.refresh()
