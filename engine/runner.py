"""The life of one engine process: a run's row, heartbeat, stop requests, logging.

Every job (train, extract, eval) runs inside ``run_job``, which first takes the run's
lease (db/lease.py: one engine per run, or a one-line refusal naming the holder), marks
the run running with this process's identity and its owner token (every later write
checks it), starts a reporter thread (heartbeat, control requests, system samples,
progress) and turns the job's outcome, whatever it is, into the run's final status and
a one-line reason.
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

from db import lifecycle
from db.fsutil import DiskFull, free_space_text, is_disk_full, reserve_space, root_cause
from db.lease import Lease, network_filesystem
from db.metric_logger import MetricLogger
from db.store import OwnershipLost, Store, WorkspaceError, run_dir_relative
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

    def __init__(self, workspace: Path, run_id: int, rank: int = 0, world_size: int = 1,
                 lease: Lease | None = None):
        self.workspace = Path(workspace).resolve()
        self.run_id = run_id
        self.rank = rank
        self.world_size = world_size
        self.is_writer = rank == 0  # rank 0 alone writes the database
        self.lease = lease           # the writer's; its token guards every write
        self.store = Store.open(self.workspace)
        self.run = self.store.get_run(run_id)
        self.config: dict = dict(self.run.config)
        self.run_dir = self.workspace / run_dir_relative(run_id)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics: MetricLogger | None = None
        self.space_reserve: Path | None = None  # freed to record the end on a full disk
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

    def claim(self, resumed: bool) -> None:
        """Become the run's owner (the lease is held already): check the run may still be
        started or resumed, mark it running with this process's identity and owner token,
        and from now on write only while that token owns it."""
        self.run = self.store.get_run(self.run_id)
        refusal = lifecycle.claim_refusal(self.run, resumed)
        if refusal:
            raise UserError(refusal)
        me = psutil.Process()
        token = self.lease.token
        self.store.mark_running(self.run_id, pid=me.pid, host=socket.gethostname(),
                                proc_start_time=me.create_time(),
                                device=resolved_device(self.config.get("device")), owner=token)
        self.store.act_as_owner(token)
        self.space_reserve = reserve_space(self.run_dir)
        self.metrics = MetricLogger(self.workspace, self.run_id, owner=token)

    def _report_loop(self) -> None:
        from db.sysinfo import sample_system  # NVML is loaded only in the reporter

        store = Store.open(self.workspace).act_as_owner(self.lease.token)
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
                except OwnershipLost as exc:  # another engine owns the run: write nothing more
                    log.error("%s", exc)
                    self._stop.set()
                    return
                except Exception as exc:  # the reporter must outlive a locked database
                    log.warning("reporter: %s", one_line(exc))
        finally:
            store.close()

    def close(self) -> None:
        """Stop the threads and close the database; never raises (the run's end is
        already recorded, or cannot be)."""
        self._closed.set()
        if self._reporter is not None:
            self._reporter.join(timeout=10)
        if self.metrics is not None:
            try:
                self.metrics.close()
            except Exception as exc:
                log.error("metric logger: %s", one_line(exc))
        self.store.close()


def one_line(exc: BaseException) -> str:
    """A reason fit for a run's message: one line, the error's type and text, and for a
    full disk the free space and the filesystem."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if is_disk_full(exc) and "disk full" not in text:
        text = f"disk full: {text}"
    if isinstance(exc, (UserError, WorkspaceError, OSError)) and not isinstance(exc, FileNotFoundError):
        reason = text
    else:
        reason = f"{type(exc).__name__}: {text}"
    return reason[:500]


def _failure_reason(exc: BaseException, ctx: RunContext) -> str:
    """One line; a full disk says so, with the free space and the filesystem, whatever
    wrapped the error on its way up (the metric logger, torch.save)."""
    if not is_disk_full(exc):
        return one_line(exc)
    reason = None
    if isinstance(exc, (UserError, WorkspaceError)):
        reason = one_line(exc)  # the job explained it already
    chain, seen = exc, set()
    while reason is None and chain is not None and id(chain) not in seen:
        if isinstance(chain, DiskFull):  # the atomic-write helper's own message
            reason = str(chain)
        seen.add(id(chain))
        chain = chain.__cause__ or chain.__context__
    if reason is None:
        reason = "disk full: " + " ".join(str(root_cause(exc)).split())
    if " free " not in reason:
        reason += f" ({free_space_text(ctx.workspace)})"
    return reason[:500]


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

    The run's lease is taken before anything is written: a second engine for the run
    raises LeaseHeld (one line, naming the holder's pid) and touches nothing. The job
    returns ``"finished"`` or ``"stopped"``; ``StopRequested`` means stopped; any other
    exception, raised anywhere, fails the run with a one-line reason (the traceback of
    an unexpected one goes to the log).
    """
    rank, world_size = ranks_from_env()
    lease = Lease.acquire(workspace, run_id) if rank == 0 else None
    try:
        ctx = RunContext(workspace, run_id, rank, world_size, lease)
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    _log_to_run_file(ctx)
    network_fs = network_filesystem(ctx.workspace)
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: ctx.request_stop())
    status, message, details = "failed", None, None
    lost = False
    try:
        if ctx.is_writer:
            ctx.claim(resumed)
            # The job itself records what it resumed from (a "resumed" event).
            ctx.event("started", f"{ctx.run.kind} run {run_id} engine started (pid {os.getpid()})"
                                 + (", resuming" if resumed else ""))
            ctx.start_reporter()
            if network_fs:
                ctx.event("warning", f"the workspace is on a network filesystem ({network_fs}): run "
                                     f"leases and SQLite locking are only reliable when every engine "
                                     f"and dashboard using it runs on this one machine")
        status = job(ctx)
        message = "stopped on request" if status == "stopped" else None
    except StopRequested:
        status, message = "stopped", "stopped on request"
    except OwnershipLost as exc:
        lost, status, message = True, "failed", str(exc)
    except KeyboardInterrupt:
        status, message = "stopped", "interrupted (Ctrl-C)"
    except BaseException as exc:
        status, message = "failed", _failure_reason(exc, ctx)
        if isinstance(exc, (UserError, WorkspaceError)) or is_disk_full(exc):
            log.error("failed: %s", message)  # explained already: a message, not a traceback
        else:
            details = {"traceback": traceback.format_exc()}
            log.error("run %d failed:\n%s", run_id, details["traceback"])
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        if ctx.is_writer and ctx.metrics is not None and not lost:
            status, message, lost = _record_end(ctx, status, message, details)
        ctx.close()
        if lease is not None:
            lease.release()
    log.info("run %d %s%s", run_id, status, f": {message}" if message else "")
    return 0 if status in ("finished", "stopped") and not lost else 1


def _record_end(ctx: RunContext, status: str, message: str | None,
                details: dict | None) -> tuple[str, str | None, bool]:
    """Flush what is buffered and write the run's final status and reason. A flush that
    fails (a full disk) turns the end into ``failed`` with that reason; a reason that
    cannot be written at all is logged. Returns (status, message, ownership lost)."""
    if ctx.space_reserve is not None:  # the room kept aside: enough to write the end
        ctx.space_reserve.unlink(missing_ok=True)
        ctx.space_reserve = None
    try:
        ctx.flush()
    except OwnershipLost as exc:
        log.error("%s", exc)
        return "failed", str(exc), True
    except Exception as exc:
        if status != "failed":
            status, message = "failed", _failure_reason(exc, ctx)
        log.error("could not save the last progress: %s", one_line(exc))
    try:
        ctx.store.finish_run(ctx.run_id, status, message)
        kind = "error" if status == "failed" else status
        ctx.store.add_event(ctx.run_id, kind, message or f"run {status}", details)
    except OwnershipLost as exc:
        log.error("%s", exc)
        return status, message, True
    except Exception as exc:
        log.error("could not record the run's end (%s): %s", status, one_line(exc))
    return status, message, False
