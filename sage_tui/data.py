"""Reads for the dashboard. Called only from thread workers, each with its own
read-only connection; results are plain objects handed to the event loop in messages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from db.processes import effective_status
from db.store import Event, Run, SeriesChunk, Store

BEST_KEY = "val_pass2"


@dataclass
class RunRow:
    run: Run
    status: str               # effective: "crashed" when the engine is gone
    best: float | None        # best validation pass@2


def load_runs(workspace: Path) -> list[RunRow]:
    with Store.open_readonly(workspace) as store:
        return [RunRow(run, effective_status(run), store.best_value(run.id, BEST_KEY))
                for run in store.list_runs()]


@dataclass
class SeriesUpdate:
    key: str
    chunk: SeriesChunk
    reset: bool   # True: replaces what the dashboard holds (first load or rows replaced)


@dataclass
class RunSnapshot:
    row: RunRow
    keys: list[str]
    updates: list[SeriesUpdate]
    events: list[Event]


def load_run(workspace: Path, run_id: int, cursors: dict[str, tuple[int | None, int]],
             points: int, events_after: int) -> RunSnapshot:
    """The run, its metric keys, and for each key in ``cursors`` (key → (last step held,
    revision held)) either the rows after the cursor, or a fresh downsampled series when
    nothing is held yet or the run's rows were replaced by a resume."""
    with Store.open_readonly(workspace) as store:
        run = store.get_run(run_id)
        row = RunRow(run, effective_status(run), store.best_value(run_id, BEST_KEY))
        updates = []
        for key, (last_step, revision) in cursors.items():
            if last_step is None or revision != run.metrics_revision:
                chunk = store.read_series_downsampled(run_id, key, points)
                updates.append(SeriesUpdate(key, chunk, reset=True))
            else:
                chunk = store.read_metrics_after(run_id, key, last_step)
                if chunk.steps:
                    updates.append(SeriesUpdate(key, chunk, reset=False))
        return RunSnapshot(row, store.metric_names(run_id), updates,
                           store.events(run_id, after_id=events_after))


def read_log_tail(workspace: Path, run: Run, max_bytes: int = 64_000) -> str:
    if not run.log_path:
        return ""
    path = workspace / run.log_path
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log yet at {path})"
