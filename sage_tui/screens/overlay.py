"""The overlay picker: the runs whose curves are drawn over the shown run's."""

from __future__ import annotations

from rich.segment import Segment
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.strip import Strip
from textual.widgets import SelectionList, Static
from textual.widgets.option_list import OptionDoesNotExist


class CheckList(SelectionList[int]):
    """A selection list whose boxes read [x] when checked and [ ] when not, so the two
    differ without colour (Textual draws the same mark for both)."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        segments = list(strip)
        try:
            option = self.get_option_at_index(self.scroll_offset.y + y)
        except OptionDoesNotExist:
            return strip
        if len(segments) < 3:
            return strip
        mark = "x" if option.value in self._selected else " "
        segments[0] = Segment("[", segments[0].style)
        segments[1] = Segment(mark, segments[1].style)
        segments[2] = Segment("]", segments[2].style)
        return Strip(segments, strip.cell_length)


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
            yield CheckList(
                *[(f"{row.run.id:>4}  {row.run.name}  ({row.run.kind}, {row.status})", row.run.id,
                   row.run.id in self.chosen)
                  for row in self.app.run_rows if row.run.id != self.run_id and row.run.kind == "train"],
                id="overlay-list")

    def action_apply(self) -> None:
        self.dismiss(list(self.query_one(SelectionList).selected))

    def action_cancel(self) -> None:
        self.dismiss(None)
