"""A live metric curve: plotext, smoothed, downsampled to the widget's width.

Rates (accuracies, exact match, pass@k) sit on a fixed 0–1 axis; a series that never
changes is drawn on a small range around its value, labelled with it; a key
``X_baseline_Y`` is not a plot of its own but a horizontal reference line on the plot of
``X_Y`` (the no-learning baseline).
"""

from __future__ import annotations

import math
import re
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
    cursor: float | None = None     # a step cursor, as a fraction of the shown range
    log_scale: bool = False         # losses on a log axis


@dataclass
class PlotLine:
    label: str
    series: Series
    epochs: Series | None = None    # the run's "epoch" series, for the epoch x axis
    baseline: Series | None = None  # its no-learning baseline, drawn as a horizontal line


RATE_WORDS = ("acc", "exact", "pass")
NO_BEST = ("epoch", "lr")           # a schedule, not a score: no "best"
BASELINE = re.compile(r"^(?P<prefix>.+)_baseline_(?P<figure>.+)$")
BASELINE_LABEL = "no-learning baseline"


def higher_is_better(key: str) -> bool:
    return any(word in key for word in ("acc", "exact", "pass", "per_s", "score"))


def is_rate(key: str) -> bool:
    return any(word in key for word in RATE_WORDS)


def has_best(key: str) -> bool:
    # A test-time-training evaluation logs one point per task (its loss, its fit, the
    # running score): the best of those is one easy task, not progress.
    return key not in NO_BEST and not key.endswith("_lr") and not key.startswith("ttt_")


def baseline_target(key: str) -> str | None:
    """The key whose plot a baseline key belongs on (val_baseline_cell_acc -> val_cell_acc)."""
    match = BASELINE.match(key)
    return f"{match['prefix']}_{match['figure']}" if match else None


def baseline_key(key: str) -> str | None:
    """The baseline key of a plotted key (val_cell_acc -> val_baseline_cell_acc)."""
    prefix, _, figure = key.partition("_")
    return f"{prefix}_baseline_{figure}" if figure else None


def plotted_keys(keys: list[str]) -> list[str]:
    """The keys that get a plot: every key but the baselines, which are drawn on their
    target's plot."""
    return [key for key in keys if baseline_target(key) is None]


def value_at(series: Series, step: float) -> float | None:
    """The value at the last step at or before ``step``."""
    index = int(np.searchsorted(np.asarray(series.steps), step, side="right")) - 1
    return series.values[index] if index >= 0 else None


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
        self.drawn_width = 0   # the width the points were last downsampled to

    def on_resize(self) -> None:
        # Points are downsampled to the plot's width: a plot first drawn before the layout
        # settled, or since resized, is drawn again at its own width.
        if self.lines and self.size.width != self.drawn_width:
            self.redraw()

    def show(self, lines: list[PlotLine], settings: PlotSettings) -> None:
        self.lines = lines
        self.settings = settings
        self.redraw()

    def title_text(self) -> str:
        if not self.lines or not self.lines[0].series.steps:
            return f"{self.key} — waiting for data"
        series = self.lines[0].series
        step = self.cursor_step()
        if step is not None:
            values = "  ".join(f"{line.label} {number(value_at(line.series, step))}"
                               for line in self.lines if line.series.steps)
            return f"{self.key} @ step {step:,.0f}: {values}"
        text = f"{self.key}  latest {number(series.latest())}"
        if constant_value(series) is not None:
            text += "  (constant)"
        elif has_best(self.key):
            text += f"  best {number(series.best(higher_is_better(self.key)))}"
        baseline = self.lines[0].baseline
        if baseline is not None and baseline.values:
            text += f"  baseline {number(baseline.latest())}"
        return text

    def cursor_step(self) -> float | None:
        """The step under the cursor: a fraction of the shown range of the first run."""
        if self.settings.cursor is None or not self.lines or not self.lines[0].series.steps:
            return None
        steps = self.lines[0].series.steps
        first = steps[0]
        if self.settings.window:
            first = max(first, steps[-1] - self.settings.window)
        raw = first + self.settings.cursor * (steps[-1] - first)
        nearest = int(np.argmin(np.abs(np.asarray(steps) - raw)))
        return steps[nearest]

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
        self.drawn_width = self.size.width
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
        self.draw_baseline(plt)
        self.set_y_axis(plt)
        step = self.cursor_step()
        if step is not None and self.lines and self.settings.x_axis == "step":
            plt.vline(step, "white")
        plt.xlabel(x_label)
        self.refresh()

    def draw_baseline(self, plt) -> None:
        """The no-learning baseline as a labelled horizontal line across the shown steps."""
        if not self.lines or not self.lines[0].series.steps:
            return
        baseline = self.lines[0].baseline
        if baseline is None or not baseline.values or not math.isfinite(baseline.latest()):
            return
        x, _ = self.x_values(self.lines[0])
        level = baseline.latest()
        plt.plot([float(x[0]), float(x[-1])], [level, level], marker="-", color="gray+",
                 label=BASELINE_LABEL)

    def set_y_axis(self, plt) -> None:
        """Rates on 0–1; a constant series on a small range around its value, labelled
        with it (plotext would pick ±1 around an odd row); losses on log when asked."""
        if not self.lines or not self.lines[0].series.steps:
            return
        if is_rate(self.key):
            plt.ylim(0, 1)
            plt.yticks([0, 0.25, 0.5, 0.75, 1], ["0", ".25", ".5", ".75", "1"])
            return
        constant = all_constant([line.series for line in self.lines if line.series.steps])
        if constant is not None:
            pad = abs(constant) * 0.5 or 1.0
            plt.ylim(constant - pad, constant + pad)
            plt.yticks([constant], [number(constant)])
            return
        if self.settings.log_scale and "loss" in self.key and all(
                v > 0 for line in self.lines for v in line.series.values if v is not None):
            plt.yscale("log")


def constant_value(series: Series) -> float | None:
    """The value of a series that never changes (finite values only), else None."""
    finite = {v for v in series.values if v is not None and math.isfinite(v)}
    return finite.pop() if len(finite) == 1 else None


def all_constant(series: list[Series]) -> float | None:
    values = {constant_value(s) for s in series}
    return values.pop() if len(values) == 1 and None not in values else None
