"""Buffered metric logging: the training loop appends to memory, a thread writes.

``log()`` costs a list append under a lock; every ``flush_interval`` seconds a
background thread writes everything buffered in one transaction on its own connection.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from db.store import Store


class MetricLogger:
    def __init__(self, workspace: str | Path, run_id: int, flush_interval: float = 0.25):
        self.workspace = Path(workspace)
        self.run_id = run_id
        self.flush_interval = flush_interval
        self._buffer: list[tuple[str, int, float, float]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self.error: BaseException | None = None
        self.rows_written = 0
        self._thread = threading.Thread(target=self._run, name="metric-logger", daemon=True)
        self._thread.start()

    def log(self, step: int, values: dict[str, float], wall_time: float | None = None) -> None:
        if self.error is not None:
            raise RuntimeError(f"metric logging failed: {self.error}") from self.error
        wall = time.time() if wall_time is None else wall_time
        rows = [(key, step, float(value), wall) for key, value in values.items()]
        with self._lock:
            self._buffer.extend(rows)

    def flush(self) -> None:
        """Block until everything logged so far is in the database."""
        self._wake.set()
        deadline = time.time() + 30
        while time.time() < deadline:
            with self._lock:
                if not self._buffer and not self._writing:
                    break
            time.sleep(0.005)
        if self.error is not None:
            raise RuntimeError(f"metric logging failed: {self.error}") from self.error

    def close(self) -> None:
        self.flush()
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)

    _writing = False

    def _run(self) -> None:
        store = Store.open(self.workspace)
        try:
            while not self._closed:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                with self._lock:
                    rows, self._buffer = self._buffer, []
                    self._writing = bool(rows)
                if rows:
                    try:
                        self.rows_written += store.append_metrics(self.run_id, rows)
                    except BaseException as exc:  # surfaced to the training loop by log()
                        self.error = exc
                        return
                    finally:
                        self._writing = False
        finally:
            store.close()
