"""The runs screen: every run with its live status; start, stop, resume, open."""

from __future__ import annotations

import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from sage_tui import control
from sage_tui.data import RunRow, load_runs
from sage_tui.format import duration, status_text

POLL_S = 1.0
DEMO_CONFIG: dict = {}  # the engine's defaults are the CPU demo: 10 small tasks, tiny student


class RunsScreen(Screen):
    BINDINGS = [
        Binding("n", "new_demo", "New demo run", id="runs.new"),
        Binding("s", "stop", "Stop", id="runs.stop"),
        Binding("r", "resume", "Resume", id="runs.resume"),
        Binding("enter", "open", "Open", id="runs.open"),
        Binding("q", "app.quit", "Quit (runs keep going)", id="app.quit"),
    ]

    class Loaded(Message):
        def __init__(self, rows: list[RunRow]) -> None:
            super().__init__()
            self.rows = rows

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[int, RunRow] = {}
        self.last_statuses: dict[int, str] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="runs-summary")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("id", key="id", width=4)
        table.add_column("name", key="name", width=18)
        table.add_column("kind", key="kind", width=7)
        table.add_column("status", key="status", width=8)
        table.add_column("step", key="step", width=7)
        table.add_column("progress", key="progress", width=8)
        table.add_column("ETA", key="eta", width=7)
        table.add_column("best", key="best", width=6)
        table.add_column("device", key="device", width=7)
        table.add_column("updated", key="updated", width=8)
        self.query_one("#runs-summary", Static).update(f"workspace: {self.app.workspace}")
        self.poll()

    # ------------------------------------------------------------- polling
    @work(thread=True, exclusive=True, group="runs-poll", exit_on_error=False)
    def poll(self) -> None:
        self.post_message(self.Loaded(load_runs(self.app.workspace)))

    @on(Loaded)
    def show_runs(self, message: Loaded) -> None:
        self.update_table(message.rows)
        self.notify_status_changes(message.rows)
        # One-shot timer re-armed after each completed poll: polls never overlap.
        self.set_timer(POLL_S, self.poll)

    def update_table(self, rows: list[RunRow]) -> None:
        table = self.query_one(DataTable)
        now = time.time()
        wanted = {row.run.id for row in rows}
        for run_id in list(self.rows):
            if run_id not in wanted:
                table.remove_row(str(run_id))
                del self.rows[run_id]
        for row in sorted(rows, key=lambda r: r.run.id):
            run = row.run
            updated = run.heartbeat_at or run.ended_at or run.created_at
            cells = {
                "id": str(run.id),
                "name": run.name,
                "kind": run.kind,
                "status": status_text(row.status),
                "step": f"{run.step}",
                "progress": f"{run.progress * 100:.0f}%" if run.progress is not None else "-",
                "eta": duration(run.eta_s) if row.status == "running" and run.eta_s else "-",
                "best": f"{row.best:.2f}" if row.best is not None else "-",
                "device": run.device or "-",
                "updated": duration(now - updated) + " ago" if updated else "-",
            }
            if run.id in self.rows:
                for column, value in cells.items():
                    table.update_cell(str(run.id), column, value)
            else:
                table.add_row(*cells.values(), key=str(run.id))
                table.sort("id", key=lambda v: -int(v))
            self.rows[run.id] = row
        if not rows:
            self.query_one("#runs-summary", Static).update(
                f"workspace: {self.app.workspace} — no runs yet: press [b]n[/b] to start a demo run")
        else:
            self.query_one("#runs-summary", Static).update(f"workspace: {self.app.workspace}")

    def notify_status_changes(self, rows: list[RunRow]) -> None:
        for row in rows:
            before = self.last_statuses.get(row.run.id)
            if before == "running" and row.status in ("finished", "failed", "crashed", "stopped"):
                severity = "information" if row.status in ("finished", "stopped") else "error"
                detail = f": {row.run.message}" if row.run.message else ""
                self.notify(f"run {row.run.id} {row.run.name} {row.status}{detail}",
                            severity=severity, timeout=8)
            self.last_statuses[row.run.id] = row.status

    # ------------------------------------------------------------- actions
    def selected(self) -> RunRow | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return self.rows.get(int(key.value))

    def action_new_demo(self) -> None:
        self.launch(lambda: control.start_run(self.app.workspace, "train", "demo", DEMO_CONFIG),
                    "started a demo training run")

    def action_stop(self) -> None:
        row = self.selected()
        if row is not None:
            self.launch(lambda: control.stop_run(self.app.workspace, row.run.id))

    def action_resume(self) -> None:
        row = self.selected()
        if row is not None:
            self.launch(lambda: control.resume_run(self.app.workspace, row.run.id))

    def action_open(self) -> None:
        row = self.selected()
        if row is not None:
            self.app.open_run(row.run.id)

    @on(DataTable.RowSelected)
    def row_selected(self) -> None:
        self.action_open()

    @work(thread=True, group="control", exit_on_error=False)
    def launch(self, action, success: str | None = None) -> None:
        """Process launches and signals run off the event loop too."""
        result = action()
        text = success or result
        if not isinstance(text, str):
            text = f"run {result.id} started"
        self.app.call_from_thread(self.notify, text)
        self.app.call_from_thread(self.poll)
