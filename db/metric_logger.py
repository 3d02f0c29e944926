"""Buffered metric logging: the training loop appends to memory, a thread writes.

``log()`` costs a list append under a lock. A background thread writes what is buffered
in one transaction on its own connection:

- when it is idle, within ``IDLE_POLL_S``, so a new point reaches readers within
  milliseconds (it looks for rows on a short period rather than being woken by
  ``log()``: a wake-up handed over in ``log()`` made the training loop wait for the GIL
  while the writer ran, up to the interpreter's 5 ms switch interval);
- under load, at most one transaction per ``LINGER_S``: whatever arrived meanwhile is
  written as one batch, so a fast loop pays one commit per batch, not per value;
- the buffer is bounded (``max_buffered`` rows): a producer faster than the disk waits
  for room, so no value is ever dropped and memory never grows without limit.

``flush_interval`` instead writes on a fixed period, the policy used before (kept so
bench/metrics_logging.py can compare the two).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from db.store import OwnershipLost, Store

IDLE_POLL_S = 0.01        # how often an idle writer looks for new rows
LINGER_S = 0.04           # shortest gap between two writes: batches under load
MAX_BUFFERED = 65_536     # rows waiting to be written before log() waits for the writer
FLUSH_TIMEOUT_S = 60.0


class MetricLogger:
    def __init__(self, workspace: str | Path, run_id: int, owner: str | None = None,
                 flush_interval: float | None = None, max_buffered: int | None = MAX_BUFFERED):
        self.workspace = Path(workspace)
        self.run_id = run_id
        self.owner = owner                    # the engine's owner token: writes check it
        self.flush_interval = flush_interval  # None: write when idle, batch under load
        self.max_buffered = max_buffered      # None: unbounded (the old policy)
        self._buffer: list[tuple[str, int, float, float]] = []
        self._changed = threading.Condition()  # rows logged, rows written, flush, close
        self._logged = 0                       # rows ever logged
        self._written = 0                      # rows ever committed
        self._flush_requested = False
        self._closed = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="metric-logger", daemon=True)
        self._thread.start()

    @property
    def rows_written(self) -> int:
        return self._written

    def _raise_error(self) -> None:
        if isinstance(self.error, OwnershipLost):
            raise self.error
        raise RuntimeError(f"metric logging failed: {self.error}") from self.error

    def log(self, step: int, values: dict[str, float], wall_time: float | None = None) -> None:
        wall = time.time() if wall_time is None else wall_time
        rows = [(key, step, float(value), wall) for key, value in values.items()]
        with self._changed:
            if self.max_buffered is not None:
                # The disk is behind: wait for room rather than drop or grow.
                while len(self._buffer) >= self.max_buffered and self.error is None:
                    self._changed.wait()
            if self.error is not None:
                self._raise_error()
            self._buffer.extend(rows)
            self._logged += len(rows)

    def flush(self) -> None:
        """Block until everything logged so far is in the database."""
        with self._changed:
            target = self._logged
            self._flush_requested = True
            self._changed.notify_all()
            done = self._changed.wait_for(lambda: self._written >= target or self.error is not None,
                                          timeout=FLUSH_TIMEOUT_S)
        if self.error is not None:
            self._raise_error()
        if not done:
            raise TimeoutError(f"metric rows not written after {FLUSH_TIMEOUT_S:.0f}s: "
                               f"the database is locked or the disk is stalled")

    def close(self) -> None:
        try:
            self.flush()
        finally:
            with self._changed:
                self._closed = True
                self._changed.notify_all()
            self._thread.join(timeout=30)

    # ----------------------------------------------------------------- writer
    def _next_batch(self, last_write: float) -> list[tuple[str, int, float, float]] | None:
        """Wait for rows to write, by the policy; None when closed with nothing left."""
        with self._changed:
            if self.flush_interval is not None:
                self._changed.wait_for(lambda: self._closed or self._flush_requested,
                                       timeout=self.flush_interval)
            else:
                while not (self._buffer or self._closed):
                    self._changed.wait(IDLE_POLL_S)
                linger = last_write + LINGER_S - time.monotonic()
                if linger > 0:  # written a moment ago: let this batch fill a little
                    full = self.max_buffered is not None and len(self._buffer) >= self.max_buffered
                    if not (full or self._flush_requested or self._closed):
                        self._changed.wait(linger)
            if not self._buffer:
                self._flush_requested = False
                return None if self._closed else []
            rows, self._buffer = self._buffer, []
            self._flush_requested = False
            self._changed.notify_all()  # room for a waiting producer
            return rows

    def _run(self) -> None:
        store = Store.open(self.workspace)
        if self.owner is not None:
            store.act_as_owner(self.owner)
        last_write = 0.0
        try:
            while True:
                rows = self._next_batch(last_write)
                if rows is None:
                    return
                if not rows:
                    with self._changed:
                        self._changed.notify_all()  # an empty flush is done
                    continue
                try:
                    store.append_metrics(self.run_id, rows)
                except BaseException as exc:  # surfaced to the training loop by log() and flush()
                    with self._changed:
                        self.error = exc
                        self._changed.notify_all()
                    return
                last_write = time.monotonic()
                with self._changed:
                    self._written += len(rows)
                    self._changed.notify_all()
        finally:
            store.close()
