"""The tasks of one evaluation: solved, partly solved and failed, searchable by id."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Static

from db.store import Evaluation
from sage_tui.data_tasks import FAILED, PARTLY, SOLVED, TaskRow, TasksView, load_tasks
from sage_tui.screens.task_view import TaskViewScreen
from sage_tui.screens.base import COMMON_KEYS, SageScreen, SageTable, selected_row_key

STATE_CELL = {SOLVED: "[green]✓ solved[/]", PARTLY: "[yellow]◐ partly[/]", FAILED: "[red]✗ failed[/]"}
FILTERS = ("all", SOLVED, PARTLY, FAILED)


SEEN_CELL = "[yellow]trained[/]"


def score_text(e: Evaluation) -> str:
    """The score as it must be read: pass@2 (or pass@1 only), the no-learning baseline
    on the same tasks, and the score without the tasks the checkpoint trained on."""
    pass2 = "pass@2" if e.attempts_per_input != 1 else "pass@2 [yellow](one attempt: a pass@1)[/]"
    text = (f"score [b]{e.score_pass2:.4f}[/b] {pass2} · {e.score_pass1:.4f} pass@1 (mean over "
            f"tasks of test inputs solved)")
    adapted = e.summary.get("test_time_training")
    if adapted:   # what answered: each task learnt from its demonstrations first
        planned = e.summary.get("n_tasks_planned")
        done = f" · {e.n_tasks} of {planned} tasks done" if planned and planned != e.n_tasks else ""
        text += f"\ntest-time training: {adapted}{done}"
    if e.summary.get("transductive"):
        text += f"\n[yellow]transductive:[/] {e.summary['transductive']}"
    if e.baseline("cell_acc") is not None:
        who = "these answers" if adapted else "this checkpoint"
        # A test-time-training evaluation sums its cells up once every task is done.
        cells = e.summary.get("cell_acc")
        ours = f"cells {cells:.0%}" if cells is not None else "cells when every task is done"
        text += (f"\nno-learning baseline: pass@2 {e.baseline('pass2'):.4f}, cells "
                 f"{e.baseline('cell_acc'):.0%} · {who}: {ours}")
    if e.overlapping_tasks:
        unseen = e.score_unseen
        count = len(e.overlapping_tasks)
        text += (f"\n[yellow]⚠ {count} task{' shares' if count == 1 else 's share'} pairs with the "
                 f"checkpoint's training tasks[/] (marked trained): without "
                 f"{'it' if count == 1 else 'them'} "
                 + (f"pass@2 [b]{unseen:.4f}[/b]" if unseen is not None else "no task is left"))
    elif not e.overlap_checked:
        text += "\n[dim]overlap with the training tasks not checked[/]"
    return text


def sort_rows(rows: list[TaskRow], by: str) -> list[TaskRow]:
    if by == "score":  # best first; among equals, the closest attempt first
        return sorted(rows, key=lambda r: (-r.score, -(r.cell_acc or 0.0), r.task_id))
    return sorted(rows, key=lambda r: r.task_id)


class TasksScreen(SageScreen):
    BINDINGS = [
        Binding("enter", "open", "Open task", id="tasks.open"),
        Binding("f", "filter('failed')", "Failed", id="tasks.failed"),
        Binding("s", "filter('solved')", "Solved", id="tasks.solved"),
        Binding("a", "filter('all')", "All", id="tasks.all"),
        Binding("slash", "search", "Search", id="tasks.search"),
        Binding("p", "filter('partly')", "Partly solved", show=False, id="tasks.partly"),
        Binding("o", "toggle_sort", "Sort by id / score", show=False, id="tasks.sort"),
        *COMMON_KEYS,
    ]

    DEFAULT_CSS = """
    TasksScreen #tasks-summary { height: auto; padding: 0 1; background: $boost; }
    TasksScreen #tasks-search { height: 1; border: none; padding: 0 1; }
    TasksScreen #tasks-table { height: 1fr; }
    """

    @dataclass
    class Loaded(Message):
        view: TasksView

    def __init__(self, evaluation_id: int, state: str = "all") -> None:
        super().__init__()
        self.evaluation_id = evaluation_id
        self.view: TasksView | None = None
        self.state = state
        self.sort_by = "id"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading…", id="tasks-summary")
        yield Input(placeholder="/ search task id", id="tasks-search")
        yield SageTable(id="tasks-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("task", key="task", width=10)
        table.add_column("state", key="state", width=10)
        table.add_column("solved", key="solved", width=6)
        table.add_column("score", key="score", width=5)
        table.add_column("pass@1", key="pass1", width=6)
        table.add_column("cells", key="cells", width=5)
        table.add_column("seen", key="seen", width=7)
        table.focus()
        self.load()

    @work(thread=True, exclusive=True, group="tasks-load", exit_on_error=False)
    def load(self) -> None:
        self.post_message(self.Loaded(load_tasks(self.app.workspace, self.evaluation_id)))

    @on(Loaded)
    def show_tasks(self, message: Loaded) -> None:
        self.view = message.view
        self.refill()


    # ---------------------------------------------------------------- drawing
    @property
    def search_text(self) -> str:
        return self.query_one("#tasks-search", Input).value.strip().lower()

    def visible(self) -> list[TaskRow]:
        if self.view is None:
            return []
        rows = [r for r in self.view.tasks
                if (self.state == "all" or r.state == self.state) and self.search_text in r.task_id.lower()]
        return sort_rows(rows, self.sort_by)

    def refill(self) -> None:
        table = self.query_one(DataTable)
        selected = self.selected()
        table.clear()
        rows = self.visible()
        for r in rows:
            table.add_row(r.task_id, STATE_CELL[r.state], f"{r.solved_pass2}/{r.n_test_inputs}",
                          f"{r.score:.2f}", f"{r.solved_pass1}/{r.n_test_inputs}",
                          f"{r.cell_acc:.0%}" if r.cell_acc is not None else "-",
                          SEEN_CELL if r.seen_in_training else "", key=r.task_id)
        if selected in {r.task_id for r in rows}:
            table.move_cursor(row=table.get_row_index(selected))
        self.show_summary(len(rows))

    def show_summary(self, shown: int) -> None:
        view = self.view
        e = view.evaluation.evaluation
        search = f"  search: [b]{self.search_text}[/b]" if self.search_text else ""
        self.query_one("#tasks-summary", Static).update(
            f"{view.evaluation.label}: {e.n_tasks} tasks, {e.n_test_inputs} test inputs\n"
            f"{score_text(e)}\n"
            f"[green]✓ solved {view.count(SOLVED)}[/]  [yellow]◐ partly {view.count(PARTLY)}[/]  "
            f"[red]✗ failed {view.count(FAILED)}[/]   showing [b]{self.state}[/b]: {shown}  "
            f"sort: {self.sort_by}{search}")
        self.sub_title = f"evaluation {e.id}"

    # ---------------------------------------------------------------- actions
    def selected(self) -> str | None:
        return selected_row_key(self.query_one(DataTable))

    def action_filter(self, state: str) -> None:
        self.state = state
        if self.view is not None:
            self.refill()

    def action_toggle_sort(self) -> None:
        self.sort_by = "score" if self.sort_by == "id" else "id"
        if self.view is not None:
            self.refill()

    def action_search(self) -> None:
        self.query_one("#tasks-search", Input).focus()

    def action_back(self) -> None:
        search = self.query_one("#tasks-search", Input)
        if search.has_focus:
            self.query_one(DataTable).focus()
        else:
            self.app.pop_screen()

    def action_open(self) -> None:
        task_id = self.selected()
        if task_id is None or self.view is None:
            return
        # Next/previous failed in the task view follow this list's order, over all tasks.
        order = [r.task_id for r in sort_rows(self.view.tasks, self.sort_by)]
        self.app.push_screen(TaskViewScreen(self.evaluation_id, task_id, order=order))

    @on(DataTable.RowSelected)
    def row_selected(self) -> None:
        self.action_open()

    @on(Input.Changed, "#tasks-search")
    def search_changed(self) -> None:
        if self.view is not None:
            self.refill()

    @on(Input.Submitted, "#tasks-search")
    def search_done(self) -> None:
        self.query_one(DataTable).focus()
