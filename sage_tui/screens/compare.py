"""Two evaluations side by side: the tasks B gained over A, lost, and unchanged."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from sage_tui.data_tasks import GAINED, LOST, UNCHANGED, Comparison, CompareRow, compare_evaluations
from sage_tui.screens.task_view import TaskViewScreen
from sage_tui.screens.base import COMMON_KEYS, SageScreen, SageTable, selected_row_key

CHANGE_CELL = {GAINED: "[green]+ gained[/]", LOST: "[red]- lost[/]", UNCHANGED: "[dim]= same[/]"}
ORDER = {GAINED: 0, LOST: 1, UNCHANGED: 2}


def score_cell(row) -> str:
    return f"{row.score:.2f} ({row.solved_pass2}/{row.n_test_inputs})" if row is not None else "absent"


class CompareScreen(SageScreen):
    BINDINGS = [
        Binding("enter", "open('b')", "Open in B", id="compare.open_b"),
        Binding("o", "open('a')", "Open in A", id="compare.open_a"),
        Binding("g", "filter('gained')", "Gained", id="compare.gained"),
        Binding("l", "filter('lost')", "Lost", id="compare.lost"),
        Binding("a", "filter('all')", "All", id="compare.all"),
        Binding("u", "filter('unchanged')", "Unchanged", show=False, id="compare.unchanged"),
        *COMMON_KEYS,
    ]

    DEFAULT_CSS = """
    CompareScreen #compare-summary { height: auto; padding: 0 1; background: $boost; }
    CompareScreen #compare-table { height: 1fr; }
    """

    @dataclass
    class Loaded(Message):
        comparison: Comparison

    def __init__(self, evaluation_a: int, evaluation_b: int) -> None:
        super().__init__()
        self.evaluation_a = evaluation_a
        self.evaluation_b = evaluation_b
        self.comparison: Comparison | None = None
        self.change = "all"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading…", id="compare-summary")
        yield SageTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("task", key="task", width=10)
        table.add_column("change", key="change", width=9)
        table.add_column("A", key="a", width=12)
        table.add_column("B", key="b", width=12)
        table.focus()
        self.load()

    @work(thread=True, exclusive=True, group="compare-load", exit_on_error=False)
    def load(self) -> None:
        self.post_message(self.Loaded(
            compare_evaluations(self.app.workspace, self.evaluation_a, self.evaluation_b)))

    @on(Loaded)
    def show_comparison(self, message: Loaded) -> None:
        self.comparison = message.comparison
        self.refill()


    def visible(self) -> list[CompareRow]:
        rows = [r for r in self.comparison.rows if self.change == "all" or r.change == self.change]
        return sorted(rows, key=lambda r: (ORDER[r.change], r.task_id))

    def refill(self) -> None:
        c = self.comparison
        table = self.query_one(DataTable)
        table.clear()
        rows = self.visible()
        for r in rows:
            table.add_row(r.task_id, CHANGE_CELL[r.change], score_cell(r.a), score_cell(r.b), key=r.task_id)
        a, b = c.a.evaluation, c.b.evaluation
        self.query_one("#compare-summary", Static).update(
            f"A: {c.a.label}  pass@2 [b]{a.score_pass2:.4f}[/b]\n"
            f"B: {c.b.label}  pass@2 [b]{b.score_pass2:.4f}[/b]\n"
            f"B vs A: [green]+{c.count(GAINED)} gained[/]  [red]-{c.count(LOST)} lost[/]  "
            f"{c.count(UNCHANGED)} unchanged ({c.solved_both} solved in both)   "
            f"showing [b]{self.change}[/b]: {len(rows)}")
        self.sub_title = f"compare {a.id} → {b.id}"

    def action_filter(self, change: str) -> None:
        self.change = change
        if self.comparison is not None:
            self.refill()

    def action_open(self, which: str) -> None:
        table = self.query_one(DataTable)
        if self.comparison is None or table.row_count == 0:
            return
        task_id = selected_row_key(table)
        row = next(r for r in self.comparison.rows if r.task_id == task_id)
        if (row.a if which == "a" else row.b) is None:
            self.notify(f"task {task_id} is not in evaluation {which.upper()}", severity="warning")
            return
        evaluation_id = self.evaluation_a if which == "a" else self.evaluation_b
        order = [r.task_id for r in self.visible()]
        self.app.push_screen(TaskViewScreen(evaluation_id, task_id, order=order))

    @on(DataTable.RowSelected)
    def row_selected(self) -> None:
        self.action_open("b")
