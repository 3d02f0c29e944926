"""ARC grids: half blocks in the official colours, the 256- and 16-colour fallbacks,
digits when colour is off, and the diff grid that marks wrong cells."""

from __future__ import annotations

import pytest
from rich.color import ColorSystem, ColorType
from rich.style import Style
from textual.app import App

from sage_tui.widgets.grid import (PALETTE, WRONG, ArcGrid, cell_colour, colour_mode, count_wrong,
                                   diff_grid, grid_size, render_grid)

# The official ARC palette, written out again here so a typo in the widget fails.
OFFICIAL = {0: (0, 0, 0), 1: (0, 116, 217), 2: (255, 65, 54), 3: (46, 204, 64), 4: (255, 220, 0),
            5: (170, 170, 170), 6: (240, 18, 190), 7: (255, 133, 27), 8: (127, 219, 255),
            9: (135, 12, 37)}


def _style_at(text, offset: int):
    """The style of one character, from the text's own spans."""
    return Style.combine([span.style for span in text.spans if span.start <= offset < span.end])


def big_grid() -> list[list[int]]:
    return [[(r * 7 + c * 3) % 10 for c in range(30)] for r in range(30)]


def test_a_30x30_grid_fits_in_15_rows_with_upper_and_lower_colours():
    grid = big_grid()
    text = render_grid(grid, "truecolor")
    lines = text.split("\n")
    assert len(lines) == 15 and all(line.cell_len == 30 for line in lines)
    assert set(text.plain) == {"▀", "\n"}
    for row in (0, 7, 14):
        line = lines[row]
        for col in (0, 13, 29):
            style = _style_at(line, col)
            assert style.color.get_truecolor() == OFFICIAL[grid[2 * row][col]]
            assert style.bgcolor.get_truecolor() == OFFICIAL[grid[2 * row + 1][col]]


def test_an_odd_height_leaves_the_last_lower_half_empty():
    text = render_grid([[1, 2], [3, 4], [5, 6]], "truecolor")
    last = text.split("\n")[1]
    style = _style_at(last, 1)
    assert style.color.get_truecolor() == OFFICIAL[6] and style.bgcolor is None
    assert grid_size([[1, 2], [3, 4], [5, 6]], "truecolor") == (2, 2)


def test_256_colours_are_eight_bit_and_distinct():
    colours = [cell_colour(v, "256") for v in range(10)]
    assert all(c.type == ColorType.EIGHT_BIT for c in colours)
    assert len({c.number for c in colours}) == 10


def test_16_colours_are_distinct_basic_colours():
    numbers = [cell_colour(v, "16").downgrade(ColorSystem.STANDARD).number for v in range(10)]
    assert all(n < 16 for n in numbers)
    assert len(set(numbers)) == 10


def test_without_colour_each_cell_is_a_digit():
    grid = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 0, 1]]
    text = render_grid(grid, "digits")
    assert text.plain == "012\n345\n678\n901"
    assert all(span.style in ("", None) or not getattr(span.style, "color", None) for span in text.spans)
    assert grid_size(grid, "digits") == (3, 4)


def test_diff_marks_wrong_cells_and_keeps_right_colours():
    expected = [[1, 2], [3, 4]]
    attempt = [[1, 9], [3, 4]]
    assert diff_grid(attempt, expected) == [[1, WRONG], [3, 4]]
    assert count_wrong(diff_grid(expected, expected)) == 0


def test_diff_of_a_wrong_shape_covers_both_shapes():
    expected = [[1, 1, 1]]             # 1×3
    attempt = [[1], [1]]               # 2×1: one cell right, two missing, one extra
    assert diff_grid(attempt, expected) == [[1, WRONG, WRONG], [WRONG, None, None]]


def test_diff_grids_draw_right_cells_dim_and_wrong_cells_white():
    diff = [[2, WRONG]]
    text = render_grid(diff, "truecolor", diff=True)
    right, wrong = (_style_at(text, i).color.get_truecolor() for i in (0, 1))
    assert wrong == (255, 255, 255)
    assert right != OFFICIAL[2] and all(a < b for a, b in zip(right, OFFICIAL[2]) if b)
    assert render_grid(diff, "digits", diff=True).plain == "·x"


@pytest.mark.parametrize("env, system, expected", [
    ({}, "truecolor", "truecolor"),
    ({}, "256", "256"),
    ({}, "standard", "16"),
    ({"NO_COLOR": "1"}, "truecolor", "digits"),
    ({"SAGE_TUI_COLOURS": "256"}, "truecolor", "256"),
])
def test_colour_mode_follows_the_terminal(monkeypatch, env, system, expected):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("SAGE_TUI_COLOURS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    class FakeConsole:
        color_system = system

    class FakeApp:
        console = FakeConsole()
        no_color = False

    assert colour_mode(FakeApp()) == expected


async def test_no_color_app_prints_digits(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("SAGE_TUI_COLOURS", raising=False)

    class GridApp(App):
        def compose(self):
            yield ArcGrid([[1, 2, 3], [4, 5, 6], [7, 8, 9]], id="g")

    app = GridApp()
    async with app.run_test(size=(20, 8)) as pilot:
        await pilot.pause()
        grid = app.query_one(ArcGrid)
        assert grid.resolved_mode == "digits"
        assert grid.content_size.height == 3 and grid.content_size.width == 3
        assert str(grid.render()) == "123\n456\n789"


def test_palette_is_the_official_one():
    assert [tuple(int(h[i:i + 2], 16) for i in (1, 3, 5)) for h in PALETTE] == \
        [OFFICIAL[v] for v in range(10)]


# What each ARC colour must come out as on the terminal, written out by hand: the SGR
# foreground code of the upper half block in each colour mode.
EXPECTED_FOREGROUND = {
    "standard": ["30", "94", "91", "92", "93", "37", "95", "33", "96", "31"],
    "256": [f"38;5;{n}" for n in (16, 32, 203, 41, 220, 247, 199, 208, 117, 88)],
    "truecolor": [f"38;2;{r};{g};{b}" for r, g, b in OFFICIAL.values()],
}


@pytest.mark.parametrize("system", list(EXPECTED_FOREGROUND))
async def test_escape_codes_a_grid_emits_in_each_colour_mode(monkeypatch, system):
    """Through the whole pipeline (theme filters, downgrade to the terminal's colours):
    in 16 colours red stays red (not magenta) and orange stays dark yellow (not bright
    red), so the ten ARC colours stay ten distinct basic colours."""
    import re

    import textual.constants

    monkeypatch.setattr(textual.constants, "COLOR_SYSTEM", system)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("SAGE_TUI_COLOURS", raising=False)

    class GridApp(App):
        def compose(self):
            yield ArcGrid([list(range(10)), list(range(10))])

    app = GridApp()
    async with app.run_test(size=(20, 4)) as pilot:
        await pilot.pause()
        line = app.screen._compositor.render_strips()[1].render(app.console)
    cells = re.findall(r"\x1b\[([0-9;]+)m▀", line)
    assert len(cells) == 10
    tokens = {"standard": 1, "256": 3, "truecolor": 5}[system]   # the foreground's share
    foregrounds = [";".join(codes.split(";")[:tokens]) for codes in cells]
    assert foregrounds == EXPECTED_FOREGROUND[system]
