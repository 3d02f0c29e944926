"""The runs screen: every run with its live status; new, stop, resume, clone, delete,
open. Rows come from the app's runs poller (SageApp.poll)."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from sage_tui import control
from sage_tui.workers import ReportsWorkerErrors
from sage_tui.data import RunRow
from sage_tui.format import clock_time, duration, status_text
from sage_tui.screens.confirm import ConfirmScreen

STATUS_FILTERS = ("all", "running", "queued", "stopped", "finished", "failed", "crashed", "unresponsive")
COLUMNS = [("id", 4), ("name", 14), ("kind", 7), ("status", 8), ("prog", 4), ("step", 7),
           ("epoch", 5), ("ETA", 6), ("best", 5), ("device", 6), ("started", 11),
           ("updated", 10)]


def matches(row: RunRow, text: str, status: str) -> bool:
    if status != "all" and row.status != status:
        return False
    if not text:
        return True
    haystack = f"{row.run.id} {row.run.name} {row.run.kind} {row.status} {row.run.device or ''}"
    return text.lower() in haystack.lower()


class RunsScreen(ReportsWorkerErrors, Screen):
    BINDINGS = [
        Binding("n", "new_run", "New", id="runs.new"),
        Binding("enter", "open", "Open", id="runs.open"),
        Binding("s", "stop", "Stop", id="runs.stop"),
        Binding("r", "resume", "Resume", id="runs.resume"),
        Binding("c", "clone", "Clone", id="runs.clone"),
        Binding("d", "delete", "Delete", id="runs.delete"),
        Binding("l", "log", "Log", id="runs.log"),
        Binding("k", "checkpoints", "Checkpoints", id="runs.checkpoints"),
        Binding("slash", "filter", "Filter", id="runs.filter"),
        Binding("f", "status_filter", "Status", id="runs.status_filter"),
        Binding("y", "app.system", "System", id="runs.system"),
        Binding("q", "app.quit", "Quit", id="app.quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[int, RunRow] = {}      # every run, filtered or not
        self.shown: list[int] = []             # run ids in the table, in order
        self.status_filter = "all"

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="runs-bar"):
            yield Input(placeholder="/ filter by name, kind, status…", id="runs-filter", compact=True)
            yield Static(id="runs-status-filter")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="runs-summary")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name, width in COLUMNS:
            table.add_column(name, key=name, width=width)
        self.show_status_filter()
        self.show_rows(self.app.run_rows)
        table.focus()

    def on_screen_resume(self) -> None:
        self.show_rows(self.app.run_rows)

    # ------------------------------------------------------------- the table
    def show_rows(self, rows: list[RunRow]) -> None:
        self.rows = {row.run.id: row for row in rows}
        self.refresh_table()

    def refresh_table(self) -> None:
        table = self.query_one(DataTable)
        text = self.query_one("#runs-filter", Input).value.strip()
        visible = [row for row in sorted(self.rows.values(), key=lambda r: -r.run.id)
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

    def cells(self, row: RunRow) -> dict:
        run, now = row.run, self.app.clock()
        updated = run.heartbeat_at or run.ended_at or run.created_at
        live = row.status == "running"
        return {
            "id": str(run.id),
            "name": run.name,
            "kind": run.kind,
            "status": status_text(row.status),
            "prog": f"{run.progress * 100:.0f}%" if run.progress is not None else "-",
            "step": str(run.step),
            "epoch": f"{run.epoch:.1f}" if run.epoch is not None else "-",
            "ETA": duration(run.eta_s) if live and run.eta_s else "-",
            "best": f"{row.best:.2f}" if row.best is not None else "-",
            "device": run.device or "-",
            "started": clock_time(run.started_at, now),
            "updated": duration(now - updated) + " ago" if updated else "-",
        }

    def show_summary(self, visible: int) -> None:
        summary = self.query_one("#runs-summary", Static)
        if not self.rows:
            summary.update("no runs yet: press [b]n[/b] to start one")
            return
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row.status] = counts.get(row.status, 0) + 1
        parts = [f"{status_text(s).markup} {n}" for s, n in sorted(counts.items())]
        summary.update(f"{visible}/{len(self.rows)} runs   " + "  ".join(parts))

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

    # --------------------------------------------------------------- actions
    def selected(self) -> RunRow | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return self.rows.get(int(key.value))

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
        row = self.selected()
        if row is not None:
            self.control(control.stop_run, row.run.id)

    def action_resume(self) -> None:
        row = self.selected()
        if row is not None:
            self.control(control.resume_run, row.run.id)

    def action_clone(self) -> None:
        row = self.selected()
        if row is None:
            return
        if row.run.kind not in ("train", "extract"):
            self.notify("only train and extract runs can be cloned", severity="warning")
            return
        self.app.open_new_run(kind=row.run.kind, prefill=row.run.config, name=f"{row.run.name}-copy")

    def action_delete(self) -> None:
        row = self.selected()
        if row is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.control(control.delete_run, row.run.id)

        self.app.push_screen(ConfirmScreen(
            f"Delete run {row.run.id} [b]{row.run.name}[/b] ({row.status})?\n"
            f"Its metrics, checkpoints and log are removed from the workspace."), answered)

    @work(thread=True, group="control", exit_on_error=False, description="run control")
    def control(self, action, run_id: int) -> None:
        """Process launches, signals and deletes run off the event loop."""
        message = action(self.app.workspace, run_id)
        self.app.call_from_thread(self.notify, message)
        self.app.call_from_thread(self.app.poll)
