"""The life of one engine process: a run's row, heartbeat, stop requests, logging.

Every job (train, extract, eval) runs inside ``run_job``, which marks the run running
with this process's identity, starts a reporter thread (heartbeat, control requests,
system samples, progress) and turns the job's outcome into the run's final status.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

import psutil

from db.metric_logger import MetricLogger
from db.store import Store, run_dir_relative
from engine.errors import UserError

log = logging.getLogger("engine")

HEARTBEAT_INTERVAL_S = 2.0
SYSTEM_SAMPLE_INTERVAL_S = 5.0


class StopRequested(Exception):
    """Raised inside a job to end it early with status ``stopped``."""


class JobFailed(UserError):
    """A failure the job has already explained; the message is the run's message."""


class RunContext:
    """What a job sees of its run. Methods are called from the job's (main) thread."""

    def __init__(self, workspace: Path, run_id: int, rank: int = 0, world_size: int = 1):
        self.workspace = Path(workspace).resolve()
        self.run_id = run_id
        self.rank = rank
        self.world_size = world_size
        self.is_writer = rank == 0  # rank 0 alone writes the database
        self.store = Store.open(self.workspace)
        self.run = self.store.get_run(run_id)
        self.config: dict = dict(self.run.config)
        self.run_dir = self.workspace / run_dir_relative(run_id)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = MetricLogger(self.workspace, run_id) if self.is_writer else None
        self._stop = threading.Event()
        self._progress: dict = {}
        self._gauges: dict[str, float] = {}
        self._lock = threading.Lock()
        self._reporter: threading.Thread | None = None
        self._closed = threading.Event()

    # --------------------------------------------------------------- for jobs
    @property
    def should_stop(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        self._stop.set()

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        if self.metrics is not None:
            self.metrics.log(step, values)

    def set_progress(self, **values: object) -> None:
        """Progress columns (step, total_steps, epoch, progress, eta_s), written with the
        next heartbeat rather than on every call."""
        with self._lock:
            self._progress.update(values)

    def set_gauges(self, **values: float) -> None:
        """Process-level figures (torch allocated/reserved/peak) for the system samples."""
        with self._lock:
            self._gauges.update(values)

    def event(self, kind: str, message: str, data: dict | None = None) -> None:
        log.info("%s: %s", kind, message)
        if self.is_writer:
            self.store.add_event(self.run_id, kind, message, data)

    def relative(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.workspace))

    def absolute(self, relative_path: str) -> Path:
        return self.workspace / relative_path

    def flush(self) -> None:
        if self.metrics is not None:
            self.metrics.flush()
        self._write_progress(self.store)

    # ------------------------------------------------------------- internals
    def start_reporter(self) -> None:
        self._reporter = threading.Thread(target=self._report_loop, name="reporter", daemon=True)
        self._reporter.start()

    def _write_progress(self, store: Store) -> None:
        with self._lock:
            progress, self._progress = self._progress, {}
        store.heartbeat(self.run_id, **progress)

    def _report_loop(self) -> None:
        from db.sysinfo import sample_system  # NVML is loaded only in the reporter

        store = Store.open(self.workspace)
        last_sample = 0.0
        try:
            while not self._closed.wait(HEARTBEAT_INTERVAL_S / 2):
                try:
                    if "stop" in store.pending_control(self.run_id):
                        log.info("stop requested from the database")
                        self._stop.set()
                    self._write_progress(store)
                    if time.time() - last_sample >= SYSTEM_SAMPLE_INTERVAL_S:
                        last_sample = time.time()
                        with self._lock:
                            gauges = dict(self._gauges)
                        store.add_system_samples(self.run_id, {**sample_system(self.workspace), **gauges})
                except Exception:  # the reporter must outlive a locked database
                    log.warning("reporter: %s", traceback.format_exc(limit=1).strip())
        finally:
            store.close()

    def close(self) -> None:
        self._closed.set()
        if self._reporter is not None:
            self._reporter.join(timeout=10)
        if self.metrics is not None:
            self.metrics.close()
        self.store.close()


def _log_to_run_file(ctx: RunContext) -> None:
    """Log to stderr; and to the run's engine.log unless stderr already is that file
    (the dashboard launches engines with stdout/stderr redirected there)."""
    log_file = ctx.absolute(ctx.run.log_path or run_dir_relative(ctx.run_id) + "/engine.log")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    try:
        same = log_file.exists() and os.path.samefile(f"/proc/self/fd/{sys.stderr.fileno()}", log_file)
    except (OSError, ValueError):
        same = False
    if not same:
        handlers.append(logging.FileHandler(log_file))
    prefix = f"[rank {ctx.rank}] " if ctx.world_size > 1 else ""
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format=f"%(asctime)s {prefix}%(levelname)s %(message)s")


def ranks_from_env() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) in a plain process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def resolved_device(spec: str | None) -> str:
    """The device this engine will use, for readers of the runs table: "auto" is a
    request, resolved here (a training job later records its exact choice)."""
    if spec and spec != "auto":
        return spec
    from engine.predict import pick_device   # imports torch: only engines get here

    return str(pick_device("auto", int(os.environ.get("LOCAL_RANK", "0"))))


def run_job(workspace: Path, run_id: int, job: Callable[[RunContext], str],
            resumed: bool = False) -> int:
    """Run ``job`` as run ``run_id``; returns the process exit code.

    The job returns ``"finished"`` or ``"stopped"``; ``StopRequested`` means stopped;
    any other exception fails the run with its traceback in the log and an event.
    """
    rank, world_size = ranks_from_env()
    ctx = RunContext(workspace, run_id, rank, world_size)
    _log_to_run_file(ctx)
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: ctx.request_stop())
    status, message = "failed", None
    try:
        if ctx.is_writer:
            me = psutil.Process()
            ctx.store.mark_running(run_id, pid=me.pid, host=socket.gethostname(),
                                   proc_start_time=me.create_time(),
                                   device=resolved_device(ctx.config.get("device")))
            # The job itself records what it resumed from (a "resumed" event).
            ctx.event("started", f"{ctx.run.kind} run {run_id} engine started (pid {os.getpid()})"
                                 + (", resuming" if resumed else ""))
            ctx.start_reporter()
        status = job(ctx)
        message = "stopped on request" if status == "stopped" else None
    except StopRequested:
        status, message = "stopped", "stopped on request"
    except UserError as exc:  # explained already: a message, not a traceback
        status, message = "failed", str(exc)
        log.error("failed: %s", exc)
        if ctx.is_writer:
            ctx.store.add_event(run_id, "error", message)
    except KeyboardInterrupt:
        status, message = "stopped", "interrupted (Ctrl-C)"
    except Exception as exc:
        status, message = "failed", f"{type(exc).__name__}: {exc}"
        log.error("run %d failed:\n%s", run_id, traceback.format_exc())
        if ctx.is_writer:
            ctx.store.add_event(run_id, "error", message, {"traceback": traceback.format_exc()})
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        try:
            if ctx.is_writer:
                ctx.flush()
                ctx.store.finish_run(run_id, status, message)
                if status != "failed":
                    ctx.store.add_event(run_id, status, message or f"run {status}")
        finally:
            ctx.close()
    log.info("run %d %s%s", run_id, status, f": {message}" if message else "")
    return 0 if status in ("finished", "stopped") else 1
