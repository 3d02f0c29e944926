"""ARC grids in the terminal, in the official ARC colours.

Each character cell shows two grid cells: '▀' with the upper cell's colour as
foreground and the lower cell's as background, so a 30×30 grid takes 30 columns and
15 rows. Colours follow the terminal: truecolour, the nearest of 256 colours, ten
distinct colours of the basic 16, or, when colour is off (NO_COLOR), the digits 0–9,
one character per cell.

A *diff grid* (see ``diff_grid``) marks where an attempt differs from the expected
output: right cells are drawn dimmed in their expected colour, wrong cells white (``x``
without colour), over the union of both shapes so a wrong shape shows too.
"""

from __future__ import annotations

import os

from rich._palettes import STANDARD_PALETTE
from rich.color import Color, ColorSystem
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

# The official ARC app's palette, colours 0-9.
PALETTE = ["#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
           "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25"]
NAMES = ["black", "blue", "red", "green", "yellow", "grey", "fuchsia", "orange", "teal", "maroon"]
# Ten distinct colours of the basic 16 (ANSI numbers), for terminals without more.
STANDARD_16 = [0, 12, 9, 10, 11, 7, 13, 3, 14, 1]

WRONG = 10          # a diff-grid cell where the attempt differs from the expected output
WRONG_HEX = "#FFFFFF"
DIM = 0.3           # right cells of a diff grid keep 30% of their colour

MODES = ("truecolor", "256", "16", "digits")
MODE_ENV = "SAGE_TUI_COLOURS"   # force a mode: truecolor, 256, 16 or digits

Grid = list[list[int | None]]


def colour_mode(app=None) -> str:
    """The mode for this terminal: $SAGE_TUI_COLOURS if set, digits when NO_COLOR is set
    (or the terminal has no colour), else what the app's console detected."""
    forced = os.environ.get(MODE_ENV, "").strip().lower()
    if forced in MODES:
        return forced
    if os.environ.get("NO_COLOR") is not None or getattr(app, "no_color", False):
        return "digits"
    system = app.console.color_system if app is not None else None
    if system == "truecolor":
        return "truecolor"
    if system == "256":
        return "256"
    return "16" if system else "digits"


def _dimmed(hex_colour: str) -> str:
    rgb = Color.parse(hex_colour).get_truecolor()
    return "#{:02X}{:02X}{:02X}".format(*(int(v * DIM) for v in rgb))


def cell_colour(value: int, mode: str, diff: bool = False) -> Color:
    """The terminal colour of one cell: a colour 0-9, or WRONG in a diff grid (where
    colours 0-9 are right cells, drawn dimmed)."""
    if mode == "16":
        if value == WRONG:
            number = 15
        elif diff:
            number = 0 if value == 0 else 8
        else:
            number = STANDARD_16[value]
        return basic_colour(number)
    hex_colour = WRONG_HEX if value == WRONG else _dimmed(PALETTE[value]) if diff else PALETTE[value]
    colour = Color.parse(hex_colour)
    return colour.downgrade(ColorSystem.EIGHT_BIT) if mode == "256" else colour


def basic_colour(number: int) -> Color:
    """ANSI colour ``number`` (0-15) as the exact RGB that the terminal downgrade maps
    back to that number. A plain ANSI colour would first be remapped through the theme's
    ANSI palette (Textual converts ANSI colours to RGB) and land on a neighbour: red on
    magenta, orange on bright red."""
    return Color.from_triplet(STANDARD_PALETTE[number])


def diff_grid(attempt: Grid | None, expected: Grid | None) -> Grid:
    """Over the union of both shapes: the expected colour where the attempt is right,
    WRONG where it differs or where only one of the two grids has a cell, None where
    neither has one."""
    attempt, expected = attempt or [], expected or []
    height = max(len(attempt), len(expected))
    width = max([len(row) for row in attempt + expected] or [0])
    out: Grid = []
    for r in range(height):
        row: list[int | None] = []
        for c in range(width):
            in_expected = r < len(expected) and c < len(expected[r])
            in_attempt = r < len(attempt) and c < len(attempt[r])
            if in_expected and in_attempt and attempt[r][c] == expected[r][c]:
                row.append(expected[r][c])
            elif in_expected or in_attempt:
                row.append(WRONG)
            else:
                row.append(None)
        out.append(row)
    return out


def count_wrong(diff: Grid) -> int:
    return sum(value == WRONG for row in diff for value in row)


def grid_size(grid: Grid, mode: str, scale: int = 1) -> tuple[int, int]:
    """(columns, rows) the grid takes on screen. Scale 2 draws each cell two columns wide
    and one row high (square on most terminals), for when there is room."""
    if not grid or not grid[0]:
        return (len("(empty)"), 1)
    width = max(len(row) for row in grid)
    if scale == 2:
        return (2 * width, len(grid))
    height = len(grid) if mode == "digits" else (len(grid) + 1) // 2
    return (width, height)


def render_grid(grid: Grid, mode: str, diff: bool = False, scale: int = 1) -> Text:
    """The grid as Rich text: half blocks in colour, or one digit per cell; at scale 2,
    two full columns per cell and one row per grid row."""
    if not grid or not grid[0]:
        return Text("(empty)", style="dim")
    width = max(len(row) for row in grid)

    def value(r: int, c: int) -> int | None:
        return grid[r][c] if r < len(grid) and c < len(grid[r]) else None

    text = Text(no_wrap=True, overflow="crop")
    pad = " " * (scale - 1)
    if mode == "digits":
        for r in range(len(grid)):
            if r:
                text.append("\n")
            for c in range(width):
                v = value(r, c)
                if v is None:
                    text.append(" " + pad)
                elif diff:
                    text.append(("x" if v == WRONG else "·") + pad, style="bold" if v == WRONG else "dim")
                else:
                    text.append(str(v) + pad)
        return text

    if scale == 2:
        for r in range(len(grid)):
            if r:
                text.append("\n")
            for c in range(width):
                v = value(r, c)
                text.append("  ", Style(bgcolor=cell_colour(v, mode, diff)) if v is not None else Style())
        return text

    styles: dict[tuple[int | None, int | None], tuple[str, Style]] = {}

    def cell(upper: int | None, lower: int | None) -> tuple[str, Style]:
        key = (upper, lower)
        if key not in styles:
            up = cell_colour(upper, mode, diff) if upper is not None else None
            down = cell_colour(lower, mode, diff) if lower is not None else None
            if up is None and down is None:
                styles[key] = (" ", Style())
            elif up is None:
                styles[key] = ("▄", Style(color=down))
            else:
                styles[key] = ("▀", Style(color=up, bgcolor=down))
        return styles[key]

    for r in range(0, len(grid), 2):
        if r:
            text.append("\n")
        for c in range(width):
            text.append(*cell(value(r, c), value(r + 1, c)))
    return text


class ArcGrid(Widget):
    """One grid, sized to its content. ``diff=True`` draws a grid from ``diff_grid``."""

    DEFAULT_CSS = """
    ArcGrid {
        width: auto;
        height: auto;
        border: round $panel-lighten-2;
    }
    """

    def __init__(self, grid: Grid | None, diff: bool = False, mode: str | None = None,
                 scale: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.grid: Grid = grid or []
        self.diff = diff
        self.mode = mode
        self.scale = scale

    @property
    def resolved_mode(self) -> str:
        return self.mode or colour_mode(self.app)

    def get_content_width(self, container, viewport) -> int:
        return grid_size(self.grid, self.resolved_mode, self.scale)[0]

    def get_content_height(self, container, viewport, width: int) -> int:
        return grid_size(self.grid, self.resolved_mode, self.scale)[1]

    def render(self) -> Text:
        return render_grid(self.grid, self.resolved_mode, self.diff, self.scale)


class GridPanel(Vertical):
    """A caption above a grid."""

    DEFAULT_CSS = """
    GridPanel {
        width: auto;
        height: auto;
        margin: 0 1 0 0;
    }
    GridPanel > .grid-caption {
        width: auto;
        max-width: 34;
        height: auto;
    }
    """
    CAPTION_MAX = 34

    def __init__(self, caption: str, grid: Grid | None, diff: bool = False, scale: int = 1,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.caption = caption
        self.grid = grid
        self.diff = diff
        self.scale = scale

    def compose(self) -> ComposeResult:
        yield Static(self.caption, classes="grid-caption")
        yield ArcGrid(self.grid, diff=self.diff, scale=self.scale)

    def columns_needed(self, mode: str) -> int:
        """Columns this panel takes: the wider of its caption and its bordered grid, and
        its right margin."""
        caption = min(Text.from_markup(self.caption).cell_len, self.CAPTION_MAX)
        return max(caption, grid_size(self.grid or [], mode, self.scale)[0] + 2) + 1
