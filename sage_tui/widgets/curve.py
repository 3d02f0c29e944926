"""A live metric curve: plotext, smoothed, downsampled to the widget's width."""

from __future__ import annotations

import numpy as np
from textual_plotext import PlotextPlot

from sage_tui.series import Series, downsample


class CurvePlot(PlotextPlot):
    """Plots one or more series; redraws only when data or settings change."""

    DEFAULT_CSS = """
    CurvePlot { height: 1fr; min-height: 8; }
    """

    def __init__(self, title: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.series: list[tuple[str, Series]] = []  # (label, series)
        self.smoothing = 0.6
        self.x_axis = "step"  # step | time

    def show(self, series: list[tuple[str, Series]], title: str | None = None) -> None:
        self.series = series
        if title is not None:
            self.title = title
        self.redraw()

    def points(self, series: Series, values: list[float]) -> tuple[list[float], list[float]]:
        if self.x_axis == "time" and series.wall_times:
            x = np.asarray(series.wall_times, dtype=float)
            x = (x - x[0]) / 60.0
        else:
            x = np.asarray(series.steps, dtype=float)
        # Two points per character column is all a terminal can show.
        x, y = downsample(x, np.asarray(values, dtype=float), max(16, 2 * max(self.size.width, 40)))
        return x.tolist(), y.tolist()

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        plt.xlabel("minutes" if self.x_axis == "time" else "step")
        drawn = False
        for label, series in self.series:
            if not series.steps:
                continue
            if self.smoothing > 0 and len(series.values) > 2:
                # The raw line stays visible, faint, behind the smoothed one.
                plt.plot(*self.points(series, series.values), marker="braille", color="gray")
                plt.plot(*self.points(series, series.smoothed(self.smoothing)),
                         marker="braille", label=label)
            else:
                plt.plot(*self.points(series, series.values), marker="braille", label=label)
            drawn = True
        if not drawn:
            plt.title(f"{self.title} — waiting for data")
        self.refresh()
