"""One ARC task of an evaluation: the test input, the expected output and both attempts
side by side, where each attempt differs, and the task's demonstration pairs."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ScrollableContainer, Vertical
from textual.message import Message
from textual.widgets import Footer, Header, Static

from db.store import Prediction
from sage_tui.data_tasks import SOLVED, TaskDetail, load_task, shape
from sage_tui.screens.base import COMMON_KEYS, SageScreen
from sage_tui.widgets.grid import GridPanel, colour_mode, count_wrong, diff_grid, grid_size

STATE_MARKUP = {"solved": "[green]✓ solved[/]", "partly": "[yellow]◐ partly solved[/]",
                "failed": "[red]✗ failed[/]"}


def shape_text(grid) -> str:
    height, width = shape(grid)
    return f"{height}×{width}"


def attempt_verdict(number: int, attempt, expected, stored_acc: float | None) -> tuple[str, str]:
    """(short caption, one-line verdict) for one attempt against the expected output."""
    if attempt is None:
        return f"attempt {number}: none", f"attempt {number}: none"
    if expected is None:
        return f"attempt {number}", f"attempt {number}: expected output unknown"
    if attempt == expected:
        return f"attempt {number} [green]✓[/]", f"attempt {number}: [green]right[/]"
    acc_text = f"{stored_acc:.0%}" if stored_acc is not None else "-"   # the engine's figure
    if shape(attempt) != shape(expected):
        return (f"attempt {number} [red]✗ {shape_text(attempt)}[/]",
                f"attempt {number}: [red]wrong shape {shape_text(attempt)}, expected "
                f"{shape_text(expected)}[/], cells {acc_text}")
    wrong = count_wrong(diff_grid(attempt, expected))
    return (f"attempt {number} [red]✗[/] {acc_text}",
            f"attempt {number}: [red]{wrong} cell{'s' if wrong != 1 else ''} wrong[/], cells {acc_text}")


def pack_rows(units: list[list[GridPanel]], mode: str, width: int) -> list[list[list[GridPanel]]]:
    """Units (panels stacked in one column) laid left to right, starting a new row when the
    next one would not fit the width: side by side when wide, stacked when narrow."""
    rows: list[list[list[GridPanel]]] = [[]]
    used = 0
    for unit in units:
        needed = unit_width(unit, mode)
        if rows[-1] and used + needed > width:
            rows.append([])
            used = 0
        rows[-1].append(unit)
        used += needed
    return rows


def unit_width(unit: list[GridPanel], mode: str) -> int:
    return max(panel.columns_needed(mode) for panel in unit)


def pick_scale(grids: list, mode: str, width: int, height: int) -> int:
    """2 (a cell two columns wide, one row high) when every grid of a row fits side by
    side and the tallest fits the height; else 1 (half blocks)."""
    sizes = [grid_size(g or [], mode, 2) for g in grids]
    fits_across = sum(w + 3 for w, _ in sizes) <= width
    fits_down = max((h for _, h in sizes), default=0) + 4 <= height
    return 2 if fits_across and fits_down else 1


class TaskViewScreen(SageScreen):
    BINDINGS = [
        Binding("n", "next_failed", "Next failed", id="task.next_failed"),
        Binding("p", "previous_failed", "Prev failed", id="task.prev_failed"),
        Binding("t", "next_test", "Next test input", id="task.next_test"),
        Binding("T", "previous_test", "Previous test input", show=False, id="task.prev_test"),
        *COMMON_KEYS,
    ]

    DEFAULT_CSS = """
    TaskViewScreen #task-status { height: auto; padding: 0 1; background: $boost; }
    TaskViewScreen #task-body { height: 1fr; overflow: auto auto; }
    TaskViewScreen .grid-row { width: auto; height: auto; }
    TaskViewScreen #test-row { width: auto; height: auto; }
    TaskViewScreen .attempt { width: auto; height: auto; }
    TaskViewScreen .section { width: auto; height: auto; padding: 0 1; text-style: bold; }
    """

    @dataclass
    class Loaded(Message):
        detail: TaskDetail

    def __init__(self, evaluation_id: int, task_id: str, order: list[str] | None = None,
                 test_index: int = 0) -> None:
        """``order``: the task ids in the order of the list the task was opened from, which
        next/previous failed follow (default: by id)."""
        super().__init__()
        self.evaluation_id = evaluation_id
        self.task_id = task_id
        self.order = list(order) if order else []
        self.test_index = test_index
        self.detail: TaskDetail | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading…", id="task-status")
        with ScrollableContainer(id="task-body"):
            yield Vertical(id="test-row")
            yield Static(id="demo-heading", classes="section")
            yield Vertical(id="demos", classes="grid-row")
        yield Footer(compact=True, show_command_palette=False)

    @property
    def layout_size(self) -> tuple[int, int]:
        """Columns and rows for grids: the task body less its scrollbar."""
        body = self.query_one("#task-body")
        width = (body.size.width or self.app.size.width) - 2
        return width, body.size.height or self.app.size.height - 6

    async def on_resize(self) -> None:
        if self.detail is not None:
            await self.show_test()
            await self.show_demonstrations()

    def on_mount(self) -> None:
        self.query_one("#task-body").focus()
        self.load()

    @work(thread=True, exclusive=True, group="task-load", exit_on_error=False)
    def load(self) -> None:
        self.post_message(self.Loaded(load_task(self.app.workspace, self.evaluation_id, self.task_id)))

    @on(Loaded)
    async def show_task(self, message: Loaded) -> None:
        if message.detail.task_id != self.task_id:
            return  # a load overtaken by a later step to another task
        detail = self.detail = message.detail
        if not self.order:
            self.order = list(detail.states)
        self.test_index = min(self.test_index, len(detail.predictions) - 1)
        self.show_status()
        await self.show_test()
        await self.show_demonstrations()
        self.query_one("#task-body").scroll_home(animate=False)


    # ---------------------------------------------------------------- drawing
    @property
    def prediction(self) -> Prediction:
        assert self.detail is not None
        return self.detail.predictions[self.test_index]

    def show_status(self) -> None:
        """Three lines: the task, then one verdict per attempt (fits 80 columns)."""
        detail, p = self.detail, self.prediction
        row = detail.row
        line = f"task [b]{detail.task_id}[/b]  {STATE_MARKUP.get(row.state, '') if row else ''}"
        if row:
            line += f"  {row.solved_pass2}/{row.n_test_inputs} tests solved, score {row.score:.2f}"
        line += f"  test {self.test_index + 1}/{len(detail.predictions)}"
        lines = [line, attempt_verdict(1, p.attempt_1, p.expected, p.cell_acc_1)[1]]
        if p.attempt_2 is not None:
            lines.append(attempt_verdict(2, p.attempt_2, p.expected, p.cell_acc_2)[1])
        self.query_one("#task-status", Static).update("\n".join(lines))
        self.sub_title = f"task {detail.task_id} — {detail.evaluation.label}"

    async def show_test(self) -> None:
        p = self.prediction
        mode = colour_mode(self.app)
        width, height = self.layout_size
        attempts = [(n, a, acc) for n, a, acc in ((1, p.attempt_1, p.cell_acc_1),
                                                  (2, p.attempt_2, p.cell_acc_2)) if a is not None]
        scale = pick_scale([p.test_input, p.expected, *[a for _, a, _ in attempts]], mode, width, height)
        count = len(self.detail.predictions)
        units = [[GridPanel(f"test {self.test_index + 1}/{count} {shape_text(p.test_input)}",
                            p.test_input, scale=scale)],
                 [GridPanel(f"expected {shape_text(p.expected)}" if p.expected is not None
                            else "expected: unknown", p.expected, scale=scale)]]
        for number, attempt, acc in attempts:
            caption = attempt_verdict(number, attempt, p.expected, acc)[0]
            unit = [GridPanel(caption, attempt, scale=scale, id=f"attempt-{number}")]
            if p.expected is not None and attempt != p.expected:
                diff = diff_grid(attempt, p.expected)
                unit.append(GridPanel(f"diff {number}: [b]{count_wrong(diff)}[/b] wrong",
                                      diff, diff=True, scale=scale, id=f"diff-{number}"))
            units.append(unit)
        row = self.query_one("#test-row", Vertical)
        await row.remove_children()
        await row.mount_all([Horizontal(*[Vertical(*unit, classes="attempt") for unit in packed],
                                        classes="grid-row")
                             for packed in pack_rows(units, mode, width)])

    async def show_demonstrations(self) -> None:
        demos = self.query_one("#demos", Vertical)
        await demos.remove_children()
        pairs = self.detail.demonstrations
        heading = self.query_one("#demo-heading", Static)
        if not pairs:
            heading.update("Demonstrations: not stored for this evaluation "
                           "(evaluations made before they were recorded)")
            return
        heading.update(f"Demonstrations ({len(pairs)})")
        mode = colour_mode(self.app)
        width, height = self.layout_size
        rows = []
        for i, (grid_in, grid_out) in enumerate(pairs, 1):
            scale = pick_scale([grid_in, grid_out], mode, width, height)
            units = [[GridPanel(f"demo {i} input {shape_text(grid_in)}", grid_in, scale=scale)],
                     [GridPanel(f"→ output {shape_text(grid_out)}", grid_out, scale=scale)]]
            rows.extend(Horizontal(*[Vertical(*unit, classes="attempt") for unit in packed],
                                   classes="grid-row")
                        for packed in pack_rows(units, mode, width))
        await demos.mount_all(rows)

    # ---------------------------------------------------------------- actions
    async def action_next_test(self, step: int = 1) -> None:
        if self.detail is None or len(self.detail.predictions) < 2:
            self.notify("this task has one test input")
            return
        self.test_index = (self.test_index + step) % len(self.detail.predictions)
        self.show_status()
        await self.show_test()

    async def action_previous_test(self) -> None:
        await self.action_next_test(-1)

    def step_failed(self, step: int) -> None:
        """Open the next (step=1) or previous (-1) task in list order that is not fully
        solved, wrapping around the ends of the list."""
        if self.detail is None:
            return
        states, order = self.detail.states, self.order
        here = order.index(self.task_id) if self.task_id in order else (-1 if step > 0 else len(order))
        for distance in range(1, len(order) + 1):
            position = here + step * distance
            candidate = order[position % len(order)]
            if candidate != self.task_id and states.get(candidate, SOLVED) != SOLVED:
                if not 0 <= position < len(order):
                    self.notify("wrapped around the list")
                self.task_id, self.test_index = candidate, 0
                self.load()
                return
        self.notify("no other failed task")

    def action_next_failed(self) -> None:
        self.step_failed(1)

    def action_previous_failed(self) -> None:
        self.step_failed(-1)
