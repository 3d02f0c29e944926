"""The runs screen: every run with its live status; new, stop, resume, clone, delete,
open. Rows come from the app's runs poller (SageApp.poll)."""

from __future__ import annotations

from functools import partial

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Input, Static

from sage_tui import control
from sage_tui.data import RunRow
from sage_tui.format import clock_time, duration, status_text
from sage_tui.screens.base import COMMON_KEYS, SageScreen, SageTable, selected_row_key
from sage_tui.screens.confirm import ConfirmScreen
from sage_tui.screens.config_diff import ConfigDiffScreen

STATUS_FILTERS = ("all", "running", "queued", "stopped", "finished", "failed", "crashed", "unresponsive")
# (column, width): the narrow set fits 80 columns (with a scrollbar); from WIDE_FROM
# columns the name gets more room, epoch, ETA and last update show, and a failed run's
# reason has its own column. The line under the table always shows the selected run's.
NARROW_COLUMNS = [("", 1), ("id", 3), ("name", 18), ("kind", 7), ("status", 8), ("prog", 4),
                  ("step", 6), ("best", 4), ("device", 6)]
WIDE_COLUMNS = [("", 1), ("id", 4), ("name", 32), ("kind", 7), ("status", 8), ("prog", 4),
                ("step", 7), ("epoch", 5), ("ETA", 6), ("best", 5), ("device", 7),
                ("updated", 10), ("reason", 26)]
WIDE_FROM = 140
SORTS = ("id", "name", "status", "step", "best", "updated")   # o cycles; a header click picks
ENDED_BADLY = ("failed", "crashed", "unresponsive")


def matches(row: RunRow, text: str, status: str) -> bool:
    if status != "all" and row.status != status:
        return False
    if not text:
        return True
    haystack = f"{row.run.id} {row.run.name} {row.run.kind} {row.status} {row.run.device or ''}"
    return text.lower() in haystack.lower()


def failure_text(row: RunRow) -> str:
    """Why a run ended badly (or its last message), for the reason column and line."""
    if row.status == "crashed" and not row.run.message:
        return "engine process gone (no heartbeat)"
    return row.run.message or ("no reason recorded" if row.status in ENDED_BADLY else "")


def sort_key(row: RunRow, by: str):
    run = row.run
    if by == "name":
        return (run.name.lower(), -run.id)
    if by == "status":
        return (row.status, -run.id)
    if by == "step":
        return (-run.step, -run.id)
    if by == "best":
        return (-(row.best if row.best is not None else -1.0), -run.id)
    if by == "updated":
        return (-(run.heartbeat_at or run.ended_at or run.created_at or 0), -run.id)
    return (-run.id,)


class RunsScreen(SageScreen):
    BINDINGS = [
        Binding("enter", "open", "Open", id="runs.open"),
        Binding("n", "new_run", "New", id="runs.new"),
        Binding("s", "stop", "Stop", id="runs.stop"),
        Binding("r", "resume", "Resume", id="runs.resume"),
        Binding("l", "log", "Log", id="runs.log"),
        Binding("c", "checkpoints", "Checkpoints", id="runs.checkpoints"),
        Binding("slash", "filter", "Filter", id="runs.filter"),
        Binding("y", "app.system", "System", id="runs.system"),
        Binding("C", "clone", "Clone", show=False, id="runs.clone"),
        Binding("d", "delete", "Delete", show=False, id="runs.delete"),
        Binding("space", "mark", "Mark (stop/delete together)", show=False, id="runs.mark"),
        Binding("f", "status_filter", "Status filter", show=False, id="runs.status_filter"),
        Binding("o", "next_sort", "Sort by next column", show=False, id="runs.sort"),
        Binding("D", "diff", "Config diff of two runs", show=False, id="runs.diff"),
        # The first screen has nothing to go back to: esc clears the filter and the marks.
        Binding("escape", "back", "Clear filter and marks", show=False, id="runs.clear"),
        *[key for key in COMMON_KEYS if key.key != "escape"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[int, RunRow] = {}      # every run, filtered or not
        self.shown: list[int] = []             # run ids in the table, in order
        self.status_filter = "all"
        self.sort_by = "id"
        self.marked: set[int] = set()
        self.columns: list[tuple[str, int]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="runs-bar"):
            yield Input(placeholder="/ filter by name, kind, status…", id="runs-filter", compact=True)
            yield Static(id="runs-status-filter")
        yield SageTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="runs-detail")
        yield Static(id="runs-summary")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.set_columns()
        self.show_status_filter()
        self.show_rows(self.app.run_rows)
        self.query_one(DataTable).focus()

    def on_resize(self) -> None:
        if self.set_columns():
            self.refresh_table()

    def on_screen_resume(self) -> None:
        self.show_rows(self.app.run_rows)

    def set_columns(self) -> bool:
        """The columns for this width; True when they changed."""
        columns = WIDE_COLUMNS if self.app.size.width >= WIDE_FROM else NARROW_COLUMNS
        if columns == self.columns:
            return False
        self.columns = columns
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for name, width in columns:
            table.add_column(name or " ", key=name or "mark", width=width)
        self.shown = []
        return True

    # ------------------------------------------------------------- the table
    def show_rows(self, rows: list[RunRow]) -> None:
        self.rows = {row.run.id: row for row in rows}
        self.marked &= set(self.rows)
        self.refresh_table()

    def refresh_table(self) -> None:
        table = self.query_one(DataTable)
        text = self.query_one("#runs-filter", Input).value.strip()
        visible = [row for row in sorted(self.rows.values(), key=lambda r: sort_key(r, self.sort_by))
                   if matches(row, text, self.status_filter)]
        ids = [row.run.id for row in visible]
        if ids != self.shown:
            selected = self.selected()
            table.clear()
            for row in visible:
                table.add_row(*self.cells(row).values(), key=str(row.run.id))
            self.shown = ids
            if selected is not None and selected.run.id in ids:
                table.move_cursor(row=ids.index(selected.run.id))
        else:
            for row in visible:
                for column, value in self.cells(row).items():
                    table.update_cell(str(row.run.id), column, value)
        self.show_summary(len(visible))
        self.show_detail()

    def cells(self, row: RunRow) -> dict:
        run, now = row.run, self.app.clock()
        updated = run.heartbeat_at or run.ended_at or run.created_at
        live = row.status == "running"
        every = {
            "mark": "●" if run.id in self.marked else "",
            "id": str(run.id),
            "name": run.name,
            "kind": run.kind,
            "status": status_text(row.status),
            "prog": f"{run.progress * 100:.0f}%" if run.progress is not None else "-",
            "step": str(run.step),
            "epoch": f"{run.epoch:.1f}" if run.epoch is not None else "-",
            "ETA": duration(run.eta_s) if live and run.eta_s else "-",
            "best": f"{row.best:.2f}" if row.best is not None else "-",
            "device": run.device if run.device and run.device != "auto" else "-",
            "started": clock_time(run.started_at, now),
            "updated": duration(now - updated) + " ago" if updated else "-",
            "reason": Text(failure_text(row), style="red" if row.status in ENDED_BADLY else "dim"),
        }
        return {name or "mark": every[name or "mark"] for name, _ in self.columns}

    @on(DataTable.RowHighlighted)
    def show_detail(self) -> None:
        """One line under the table about the selected run: why it failed, or its message,
        so a reason outlives the notification that first said it."""
        row = self.selected()
        detail = self.query_one("#runs-detail", Static)
        if row is None:
            detail.update("")
            return
        reason = failure_text(row)
        style = "red" if row.status in ENDED_BADLY else "dim"
        line = Text(f"run {row.run.id} {row.run.name}: ", style="bold")
        line.append(row.status, style=status_text(row.status).style)
        if reason:
            line.append(f" — {reason}", style=style)
        if row.status in ENDED_BADLY:
            line.append("  (l: log)", style="dim")
        detail.update(line)

    def show_summary(self, visible: int) -> None:
        summary = self.query_one("#runs-summary", Static)
        if not self.rows:
            summary.update("no runs yet: press [b]n[/b] to start one")
            return
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row.status] = counts.get(row.status, 0) + 1
        parts = [f"{status_text(s).markup} {n}" for s, n in sorted(counts.items())]
        marked = f"   [b]{len(self.marked)} marked[/b]" if self.marked else ""
        summary.update(f"{visible}/{len(self.rows)} runs   " + "  ".join(parts)
                       + f"   sort: {self.sort_by} (o){marked}")

    def show_status_filter(self) -> None:
        self.query_one("#runs-status-filter", Static).update(
            f"status: [b]{self.status_filter}[/b] (f)")

    # --------------------------------------------------------------- filters
    @on(Input.Changed, "#runs-filter")
    def filter_changed(self) -> None:
        self.refresh_table()

    @on(Input.Submitted, "#runs-filter")
    def filter_done(self) -> None:
        self.query_one(DataTable).focus()

    def action_filter(self) -> None:
        self.query_one("#runs-filter", Input).focus()

    def action_status_filter(self) -> None:
        index = STATUS_FILTERS.index(self.status_filter)
        self.status_filter = STATUS_FILTERS[(index + 1) % len(STATUS_FILTERS)]
        self.show_status_filter()
        self.refresh_table()

    def sort(self, by: str) -> None:
        self.sort_by = by
        self.shown = []   # the order changed: rebuild
        self.refresh_table()

    def action_next_sort(self) -> None:
        self.sort(SORTS[(SORTS.index(self.sort_by) + 1) % len(SORTS)])

    @on(DataTable.HeaderSelected)
    def header_clicked(self, event: DataTable.HeaderSelected) -> None:
        key = event.column_key.value
        self.sort(key if key in SORTS else "id")

    # --------------------------------------------------------------- actions
    def selected(self) -> RunRow | None:
        key = selected_row_key(self.query_one(DataTable))
        return self.rows.get(int(key)) if key is not None else None

    def chosen(self) -> list[RunRow]:
        """The marked runs, or else the one under the cursor."""
        if self.marked:
            return [self.rows[i] for i in sorted(self.marked) if i in self.rows]
        row = self.selected()
        return [row] if row is not None else []

    def action_mark(self) -> None:
        row = self.selected()
        if row is None:
            return
        self.marked ^= {row.run.id}
        table = self.query_one(DataTable)
        table.update_cell(str(row.run.id), "mark", "●" if row.run.id in self.marked else "")
        self.show_summary(len(self.shown))
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_back(self) -> None:
        self.query_one("#runs-filter", Input).value = ""
        self.marked.clear()
        self.status_filter = "all"
        self.show_status_filter()
        self.shown = []
        self.refresh_table()
        self.query_one(DataTable).focus()

    def action_new_run(self) -> None:
        self.app.open_new_run()

    def action_open(self) -> None:
        row = self.selected()
        if row is not None:
            self.app.open_run(row.run.id)

    @on(DataTable.RowSelected)
    def row_selected(self) -> None:
        self.action_open()

    def action_log(self) -> None:
        row = self.selected()
        if row is not None:
            self.app.open_run(row.run.id, tab="log")

    def action_checkpoints(self) -> None:
        row = self.selected()
        if row is not None:
            self.app.open_checkpoints(row.run.id)

    def action_stop(self) -> None:
        rows = self.chosen()
        if rows:
            ids = [row.run.id for row in rows]
            self.marked.clear()
            self.act(lambda: "\n".join(control.stop_run(self.app.workspace, i) for i in ids))

    def action_resume(self) -> None:
        row = self.selected()
        if row is not None:
            self.act(partial(control.resume_run, self.app.workspace, row.run.id))

    def action_clone(self) -> None:
        row = self.selected()
        if row is None:
            return
        if row.run.kind not in ("train", "extract"):
            self.notify("only train and extract runs can be cloned", severity="warning")
            return
        self.app.open_new_run(kind=row.run.kind, prefill=row.run.config, name=f"{row.run.name}-copy")

    def action_delete(self) -> None:
        rows = self.chosen()
        if not rows:
            return
        live = [row for row in rows if row.status in ("running", "queued")]
        if live:   # said before asking, not after
            names = ", ".join(f"run {row.run.id} is {row.status}" for row in live)
            self.notify(f"{names}: stop it before deleting it (s stops it)", severity="warning")
            return
        ids = [row.run.id for row in rows]
        what = (f"run {rows[0].run.id} [b]{rows[0].run.name}[/b] ({rows[0].status})" if len(rows) == 1
                else f"{len(rows)} runs ({', '.join(map(str, ids))})")

        def answered(yes: bool | None) -> None:
            if yes:
                self.marked.clear()
                self.act(lambda: "\n".join(control.delete_run(self.app.workspace, i) for i in ids))

        self.app.push_screen(ConfirmScreen(
            f"Delete {what}?\nTheir metrics, checkpoints and logs are removed from the workspace."
            if len(rows) > 1 else
            f"Delete {what}?\nIts metrics, checkpoints and log are removed from the workspace."),
            answered)

    def action_diff(self) -> None:
        """The settings that differ between the two marked runs (or the marked one and
        the one under the cursor)."""
        pair = sorted(self.marked)
        row = self.selected()
        if len(pair) == 1 and row is not None and row.run.id not in pair:
            pair.append(row.run.id)
        if len(pair) != 2:
            self.notify("mark two runs with space, then press D", severity="warning")
            return
        first, second = sorted(pair)
        self.app.push_screen(ConfigDiffScreen(self.rows[first].run, self.rows[second].run))
