"""Output shapes inferred from a task's demonstrations: pure numpy, no torch.

A per-task student predicts colours on an output grid of a known shape, so the shape is
inferred first, from the demonstrations only, by rules a person would try: each output
dimension as a multiple, fraction or offset of an input dimension, or a constant; or
the bounding box of something in the input (all non-background cells, one colour, the
largest or smallest object), which also tells where the output is cut from.
Rules are tried in order; the test input's candidate shapes come out most likely first,
so a second attempt can use the second candidate.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np

from engine.grid_features import _components

MAX_SIZE = 30
Grid = np.ndarray


def _colour_count(grid: Grid) -> int:
    """Colours other than 0."""
    return int(np.count_nonzero(np.bincount(grid.ravel(), minlength=10)[1:]))


def _cell_count(grid: Grid) -> int:
    return int(np.count_nonzero(grid))


def _object_count(grid: Grid) -> int:
    return int(_components(grid).max())


# What an output dimension may be measured from, the most natural first: the input's
# height and width, then counts read from the input ("one row per colour", "the input
# tiled once per coloured cell"). Counts are tried only after the dimensions, so they
# decide only tasks whose output size the input's shape does not explain.
SOURCES: dict[str, Callable[[Grid], int]] = {
    "h": lambda g: g.shape[0],
    "w": lambda g: g.shape[1],
    "colours": _colour_count,
    "cells": _cell_count,
    "objects": _object_count,
    "h*colours": lambda g: g.shape[0] * _colour_count(g),
    "w*colours": lambda g: g.shape[1] * _colour_count(g),
    "h*cells": lambda g: g.shape[0] * _cell_count(g),
    "w*cells": lambda g: g.shape[1] * _cell_count(g),
}


@dataclass(frozen=True)
class DimensionRule:
    """One output dimension measured from the input: ``source`` names a measure in
    ``SOURCES`` (None = a constant); ``ratio`` then ``offset`` applied."""
    source: str | None
    ratio: Fraction = Fraction(1)
    offset: int = 0

    def apply(self, grid: Grid) -> int | None:
        if self.source is None:
            return self.offset
        value = SOURCES[self.source](grid) * self.ratio + self.offset
        return int(value) if value.denominator == 1 else None

    def __str__(self) -> str:
        if self.source is None:
            return str(self.offset)
        ratio = "" if self.ratio == 1 else f"*{self.ratio}"
        offset = f"{self.offset:+d}" if self.offset else ""
        return f"{self.source}{ratio}{offset}"


def _dimension_rules(pairs: list[tuple[Grid, Grid]], dim: int) -> list[DimensionRule]:
    """Every rule consistent with all demonstrations for output dimension ``dim``,
    the most natural first: from the same input dimension, then the other, then a
    constant, then the counts."""
    outputs = [out.shape[dim] for _, out in pairs]
    same, other = "hw"[dim], "hw"[1 - dim]
    rules: list[DimensionRule] = []

    def consistent(source: str) -> None:
        inputs = [SOURCES[source](inp) for inp, _ in pairs]
        if min(inputs) > 0:
            ratios = {Fraction(o, i) for o, i in zip(outputs, inputs)}
            if len(ratios) == 1:
                rules.append(DimensionRule(source, ratios.pop()))
        offsets = {o - i for o, i in zip(outputs, inputs)}
        if len(offsets) == 1 and source in (same, other):   # a count plus an offset fits by chance too often
            rules.append(DimensionRule(source, Fraction(1), offsets.pop()))

    consistent(same)
    consistent(other)
    if len(set(outputs)) == 1:
        rules.append(DimensionRule(None, Fraction(1), outputs[0]))
    for source in SOURCES:
        if source not in (same, other) and len(set(outputs)) > 1:
            consistent(source)
    unique = {str(rule): rule for rule in reversed(rules)}   # "h*1" and "h+0" once, first kept
    return sorted(unique.values(), key=rules.index)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def _background(grid: Grid) -> int:
    return int(np.bincount(grid.ravel(), minlength=10).argmax())


def _object_box(grid: Grid, pick: Callable) -> tuple[int, int, int, int] | None:
    labels = _components(grid)
    sizes = np.bincount(labels.ravel())[1:]
    if sizes.size == 0:
        return None
    return _bbox(labels == 1 + int(pick(sizes)))


def _inside(box: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
    """A box without its one-cell border (the inside of a frame)."""
    if box is None or box[2] - box[0] < 3 or box[3] - box[1] < 3:
        return None
    return box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1


def _least_frequent(grid: Grid) -> int:
    counts = np.bincount(grid.ravel(), minlength=10).astype(float)
    counts[0] = np.inf
    counts[counts == 0] = np.inf
    return int(np.argmin(counts))


# Regions an output may be cut from. Colour-specific ones take the colour through the
# augmentation's permutation, so they hold in every augmented frame.
CropRegion = Callable[[Grid, np.ndarray], "tuple[int, int, int, int] | None"]


def _crop_regions() -> dict[str, CropRegion]:
    regions: dict[str, CropRegion] = {
        "non-zero cells": lambda g, perm: _bbox(g != 0),
        "non-background cells": lambda g, perm: _bbox(g != _background(g)),
        "largest object": lambda g, perm: _object_box(g, np.argmax),
        "smallest object": lambda g, perm: _object_box(g, np.argmin),
    }
    for colour in range(1, 10):
        regions[f"colour {colour}"] = lambda g, perm, colour=colour: _bbox(g == perm[colour])
    # Tried last: they decide only tasks that no region above explains.
    regions["least frequent colour"] = lambda g, perm: _bbox(g == _least_frequent(g))
    regions["inside of the largest object"] = lambda g, perm: _inside(_object_box(g, np.argmax))
    return regions


CROP_REGIONS = _crop_regions()
IDENTITY = np.arange(10)


@dataclass(frozen=True)
class ShapeModel:
    """The inferred rules of one task."""
    height: tuple[DimensionRule, ...]
    width: tuple[DimensionRule, ...]
    crop: str | None                  # name in CROP_REGIONS whose box matches every output
    fallback: tuple[int, int]         # the demonstrations' most common output shape

    def candidates(self, grid: Grid, perm: np.ndarray = IDENTITY) -> list[tuple[int, int]]:
        """Output shapes for ``grid``, most likely first, distinct, each within 1..30."""
        shapes: list[tuple[int, int]] = []
        heights = [h for h in (r.apply(grid) for r in self.height) if h]
        widths = [w for w in (r.apply(grid) for r in self.width) if w]
        if heights and widths:
            shapes.append((heights[0], widths[0]))
            shapes += [(h, widths[0]) for h in heights[1:]] + [(heights[0], w) for w in widths[1:]]
        box = self.crop_box(grid, perm)
        if box is not None:
            shapes.append((box[2] - box[0], box[3] - box[1]))
        shapes.append(self.fallback)
        valid = [s for s in shapes if 1 <= s[0] <= MAX_SIZE and 1 <= s[1] <= MAX_SIZE]
        return list(dict.fromkeys(valid)) or [grid.shape]

    def crop_box(self, grid: Grid, perm: np.ndarray = IDENTITY) -> tuple[int, int, int, int] | None:
        return CROP_REGIONS[self.crop](grid, perm) if self.crop else None

    def describe(self) -> str:
        parts = [f"height {self.height[0]}" if self.height else "height ?",
                 f"width {self.width[0]}" if self.width else "width ?"]
        if self.crop:
            parts.append(f"cut from the box of the {self.crop}")
        return ", ".join(parts)


def infer_shapes(pairs: list[tuple[Grid, Grid]]) -> ShapeModel:
    """Rules consistent with every demonstration (input, output) pair."""
    pairs = [(np.asarray(i), np.asarray(o)) for i, o in pairs]
    crop = None
    for name, region in CROP_REGIONS.items():
        boxes = [region(inp, IDENTITY) for inp, _ in pairs]
        if all(b is not None and (b[2] - b[0], b[3] - b[1]) == out.shape
               for b, (_, out) in zip(boxes, pairs)):
            crop = name
            break
    fallback = Counter(out.shape for _, out in pairs).most_common(1)[0][0]
    return ShapeModel(tuple(_dimension_rules(pairs, 0)), tuple(_dimension_rules(pairs, 1)),
                      crop, fallback)
