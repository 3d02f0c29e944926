"""One ARC task of an evaluation: the test input, the expected output and both attempts
side by side, where each attempt differs, and the task's demonstration pairs."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ScrollableContainer, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from db.store import Prediction
from sage_tui.data_tasks import SOLVED, TaskDetail, load_task, shape
from sage_tui.widgets.grid import GridPanel, count_wrong, diff_grid
from sage_tui.workers import ReportsWorkerErrors

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


class TaskViewScreen(ReportsWorkerErrors, Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="task.back"),
        Binding("n", "next_failed", "Next failed", id="task.next_failed"),
        Binding("p", "previous_failed", "Prev failed", id="task.prev_failed"),
        Binding("t", "next_test", "Next test input", id="task.next_test"),
        Binding("T", "previous_test", "Prev test input", show=False, id="task.prev_test"),
    ]

    DEFAULT_CSS = """
    TaskViewScreen #task-status { height: auto; padding: 0 1; background: $boost; }
    TaskViewScreen #task-body { height: 1fr; overflow: auto auto; }
    TaskViewScreen .grid-row { width: auto; height: auto; }
    TaskViewScreen .attempt { width: auto; height: auto; }
    TaskViewScreen .section { width: auto; height: auto; padding: 0 1; text-style: bold; }
    """

    class Loaded(Message):
        def __init__(self, detail: TaskDetail) -> None:
            super().__init__()
            self.detail = detail

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
            yield Horizontal(id="test-row", classes="grid-row")
            yield Static(id="demo-heading", classes="section")
            yield Vertical(id="demos", classes="grid-row")
        yield Footer(compact=True)

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
        row = self.query_one("#test-row", Horizontal)
        await row.remove_children()
        count = len(self.detail.predictions)
        panels = [GridPanel(f"test {self.test_index + 1}/{count} {shape_text(p.test_input)}",
                            p.test_input),
                  GridPanel(f"expected {shape_text(p.expected)}" if p.expected is not None
                            else "expected: unknown", p.expected)]
        for number, attempt, acc in ((1, p.attempt_1, p.cell_acc_1), (2, p.attempt_2, p.cell_acc_2)):
            if attempt is None:
                continue
            caption = attempt_verdict(number, attempt, p.expected, acc)[0]
            children = [GridPanel(caption, attempt, id=f"attempt-{number}")]
            if p.expected is not None and attempt != p.expected:
                diff = diff_grid(attempt, p.expected)
                children.append(GridPanel(f"diff {number}: [b]{count_wrong(diff)}[/b] wrong",
                                          diff, diff=True, id=f"diff-{number}"))
            panels.append(Vertical(*children, classes="attempt"))
        await row.mount_all(panels)

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
        rows = [Horizontal(GridPanel(f"demo {i} input {shape_text(grid_in)}", grid_in),
                           GridPanel(f"→ output {shape_text(grid_out)}", grid_out),
                           classes="grid-row")
                for i, (grid_in, grid_out) in enumerate(pairs, 1)]
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
