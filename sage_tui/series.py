"""A metric series held by the dashboard: fetched incrementally, drawn downsampled.

The first load of a key asks SQLite for a downsampled series (bucket min/max, last
point kept); after that only rows past the last step are read. Drawing buckets the
points again to at most two per character column, so a plot's cost never grows with
the length of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Series:
    key: str
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    wall_times: list[float] = field(default_factory=list)
    revision: int = -1  # the run's metrics_revision these rows belong to; -1 = never loaded
    # Incremental EMA: new points extend it, so smoothing costs O(new rows) per refresh.
    _smooth_weight: float = field(default=-1.0, repr=False)
    _smooth_state: tuple[float, int] = field(default=(0.0, 0), repr=False)
    _smoothed: list[float] = field(default_factory=list, repr=False)

    @property
    def last_step(self) -> int | None:
        return self.steps[-1] if self.steps else None

    def extend(self, steps: list[int], values: list[float], wall_times: list[float]) -> None:
        self.steps.extend(steps)
        self.values.extend(values)
        self.wall_times.extend(wall_times)

    def extend_after(self, steps: list[int], values: list[float], wall_times: list[float]) -> None:
        """Append only rows past the last step held, so a reply that overlaps an earlier
        one never draws a step twice."""
        start = 0
        if self.steps:
            while start < len(steps) and steps[start] <= self.steps[-1]:
                start += 1
        self.extend(steps[start:], values[start:], wall_times[start:])

    def smoothed(self, weight: float) -> list[float]:
        """TensorBoard's debiased EMA of the values; NaN/Inf pass through."""
        if weight != self._smooth_weight or len(self._smoothed) > len(self.values):
            self._smooth_weight, self._smooth_state, self._smoothed = weight, (0.0, 0), []
        last, count = self._smooth_state
        for value in self.values[len(self._smoothed):]:
            if value is None or not math.isfinite(value) or weight <= 0:
                self._smoothed.append(value)
                continue
            last = last * weight + (1 - weight) * value
            count += 1
            self._smoothed.append(last / (1 - weight ** count))
        self._smooth_state = (last, count)
        return self._smoothed

    def latest(self) -> float | None:
        return self.values[-1] if self.values else None

    def best(self, higher_is_better: bool) -> float | None:
        finite = [v for v in self.values if v is not None and math.isfinite(v)]
        if not finite:
            return None
        return max(finite) if higher_is_better else min(finite)


def downsample(x: np.ndarray, y: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ~``points`` points: each bucket keeps its min and max (a spike survives)
    and the first and last points are always kept. Vectorised: two sorts, no loop."""
    n = len(x)
    if n <= points:
        return x, y
    buckets = max(1, points // 2)
    edges = np.linspace(0, n, buckets + 1).astype(int)
    bucket_of = np.repeat(np.arange(buckets), np.diff(edges))
    finite = np.isfinite(y)
    # Within each bucket (the primary sort key), the smallest value comes first and the
    # largest last; a bucket's block keeps its place, so its edges index the result.
    by_min = np.lexsort((np.where(finite, y, np.inf), bucket_of))
    by_max = np.lexsort((np.where(finite, y, -np.inf), bucket_of))
    filled = edges[1:] > edges[:-1]
    keep = np.concatenate((by_min[edges[:-1][filled]], by_max[edges[1:][filled] - 1], [0, n - 1]))
    index = np.unique(keep)
    return x[index], y[index]
