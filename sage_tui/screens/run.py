"""One run: status line, a live curve of one metric at a time, events and log tail."""

from __future__ import annotations

import time

from rich.text import Text

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane, RichLog

from sage_tui import control
from sage_tui.data import RunSnapshot, load_run, read_log_tail
from sage_tui.format import duration, number, status_text
from sage_tui.series import Series
from sage_tui.widgets.curve import CurvePlot

POLL_S = 1.0
DEFAULT_KEY = "loss"
HIGHER_IS_BETTER = ("acc", "exact", "pass", "per_s", "lr")


class RunScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="run.back"),
        Binding("right_square_bracket", "next_key", "Next metric", id="run.next_key"),
        Binding("left_square_bracket", "previous_key", "Prev metric", id="run.prev_key"),
        Binding("m", "toggle_smoothing", "Smoothing", id="run.smoothing"),
        Binding("x", "toggle_x_axis", "Step/time", id="run.x_axis"),
        Binding("s", "stop", "Stop", id="run.stop"),
        Binding("r", "resume", "Resume", id="run.resume"),
        Binding("l", "show_log", "Log", id="run.log"),
    ]

    class Loaded(Message):
        def __init__(self, snapshot: RunSnapshot) -> None:
            super().__init__()
            self.snapshot = snapshot

    class LogLoaded(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.keys: list[str] = []
        self.key = DEFAULT_KEY
        self.series: dict[str, Series] = {}
        self.last_event_id = 0
        self.snapshot: RunSnapshot | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="run-status")
        with TabbedContent(id="run-tabs"):
            with TabPane("Curves", id="tab-curves"):
                with Vertical():
                    yield Static(id="curve-legend")
                    yield CurvePlot(id="curve")
            with TabPane("Events", id="tab-events"):
                yield RichLog(id="events", wrap=True, markup=False)
            with TabPane("Log", id="tab-log"):
                yield RichLog(id="log", wrap=False, markup=False)
            with TabPane("Config", id="tab-config"):
                yield Static(id="config")
        yield Footer()

    def on_mount(self) -> None:
        self.poll()

    # ------------------------------------------------------------- polling
    @property
    def plot_points(self) -> int:
        return max(80, 2 * self.query_one(CurvePlot).size.width)

    @work(thread=True, exclusive=True, group="run-poll", exit_on_error=False)
    def poll(self) -> None:
        series = self.series.get(self.key)
        cursor = (series.last_step, series.revision) if series else (None, -1)
        snapshot = load_run(self.app.workspace, self.run_id, {self.key: cursor},
                            self.plot_points, self.last_event_id)
        self.post_message(self.Loaded(snapshot))

    @on(Loaded)
    def show_snapshot(self, message: Loaded) -> None:
        snapshot = self.snapshot = message.snapshot
        self.keys = snapshot.keys
        if self.key not in self.keys and self.keys and DEFAULT_KEY not in self.keys:
            self.key = self.keys[0]
        changed = False
        for update in snapshot.updates:
            series = self.series.get(update.key)
            if update.reset or series is None:
                series = self.series[update.key] = Series(update.key, revision=update.chunk.revision)
            series.extend(update.chunk.steps, update.chunk.values, update.chunk.wall_times)
            changed = True
        if changed or not self.series:
            self.draw()
        self.show_status(snapshot)
        events = self.query_one("#events", RichLog)
        for event in snapshot.events:
            events.write(f"{_clock(event.t)}  {event.kind:<10} {event.message}")
            self.last_event_id = event.id
        self.set_timer(POLL_S, self.poll)

    def show_status(self, snapshot: RunSnapshot) -> None:
        run, status = snapshot.row.run, snapshot.row.status
        progress = f"{run.progress * 100:.1f}%" if run.progress is not None else "-"
        parts = [f"run {run.id} [b]{run.name}[/b] ({run.kind})", status_text(status).markup,
                 f"step {run.step}" + (f"/{run.total_steps}" if run.total_steps else ""),
                 progress]
        if status == "running" and run.eta_s:
            parts.append(f"ETA {duration(run.eta_s)}")
        if run.device:
            parts.append(run.device)
        if run.message:
            parts.append(f"— {run.message}")
        if status == "crashed":
            parts.append("— engine gone; press [b]l[/b] for its log")
        self.query_one("#run-status", Static).update("  ".join(parts))
        self.query_one("#config", Static).update(
            "\n".join(f"{k} = {v!r}" for k, v in sorted(run.config.items())) or "(no settings)")

    def draw(self) -> None:
        series = self.series.get(self.key)
        plot = self.query_one(CurvePlot)
        plot.show([(self.key, series)] if series else [], title=self.key)
        higher = any(word in self.key for word in HIGHER_IS_BETTER)
        latest = series.latest() if series else None
        best = series.best(higher) if series else None
        position = f"{self.keys.index(self.key) + 1}/{len(self.keys)}" if self.key in self.keys else "-"
        self.query_one("#curve-legend", Static).update(
            f"[b]{self.key}[/b] ({position}, [ ] to change)   latest {number(latest)}   "
            f"best {number(best)}   smoothing {plot.smoothing:.1f} (m)   x: {plot.x_axis} (x)")

    # ------------------------------------------------------------- actions
    def _switch_key(self, offset: int) -> None:
        if not self.keys:
            return
        index = self.keys.index(self.key) if self.key in self.keys else 0
        self.key = self.keys[(index + offset) % len(self.keys)]
        self.draw()
        self.poll()

    def action_next_key(self) -> None:
        self._switch_key(1)

    def action_previous_key(self) -> None:
        self._switch_key(-1)

    def action_toggle_smoothing(self) -> None:
        plot = self.query_one(CurvePlot)
        plot.smoothing = {0.0: 0.6, 0.6: 0.9}.get(plot.smoothing, 0.0)
        self.draw()

    def action_toggle_x_axis(self) -> None:
        plot = self.query_one(CurvePlot)
        plot.x_axis = "time" if plot.x_axis == "step" else "step"
        self.draw()

    def action_stop(self) -> None:
        self.control(lambda: control.stop_run(self.app.workspace, self.run_id))

    def action_resume(self) -> None:
        self.control(lambda: control.resume_run(self.app.workspace, self.run_id))

    def action_show_log(self) -> None:
        self.query_one(TabbedContent).active = "tab-log"
        self.load_log()

    @work(thread=True, exclusive=True, group="run-log", exit_on_error=False)
    def load_log(self) -> None:
        if self.snapshot is not None:
            self.post_message(self.LogLoaded(read_log_tail(self.app.workspace, self.snapshot.row.run)))

    @on(LogLoaded)
    def show_log(self, message: LogLoaded) -> None:
        log = self.query_one("#log", RichLog)
        log.clear()
        for line in message.text.splitlines():
            log.write(Text(line, style=_log_style(line)))
        log.scroll_end(animate=False)

    @on(TabbedContent.TabActivated)
    def tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "tab-log":
            self.load_log()

    @work(thread=True, group="control", exit_on_error=False)
    def control(self, action) -> None:
        self.app.call_from_thread(self.notify, action())


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _log_style(line: str) -> str:
    """Tracebacks and errors stand out in the log tail."""
    if line.startswith("Traceback") or line.startswith("  File ") or "Error" in line:
        return "bold red"
    if " WARNING " in line:
        return "yellow"
    return ""
