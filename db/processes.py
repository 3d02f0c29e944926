"""Engine processes: launching them detached, checking they are alive, signalling them.

Whether an engine still owns its run is told by the run's lease (db/lease.py).

A run's row records the engine's pid, host and process start time. A process is only
ever signalled when all three match, so a reused pid is never hit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from db.lease import lease_holder
from db.store import HEARTBEAT_STALE_S, TERMINAL_STATUSES, Run, Store

HOST = socket.gethostname()
QUEUED_START_S = 120.0  # an engine that has not marked its run running by then never will


def process_matches(pid: int | None, host: str | None, start_time: float | None) -> bool:
    """True when ``pid`` on this host is the very process that was recorded: same pid,
    same host, same start time. A reused pid fails the start-time check."""
    if pid is None or host != HOST or start_time is None:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - start_time) < 0.01
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def effective_status(run: Run, now: float | None = None) -> str:
    """What a run really is now. The stored status, except:

    - a run on this host is judged by its lease (db/lease.py), which the kernel drops
      the moment its engine dies: ``running`` with the lease free is ``crashed`` at once;
      ``running`` with the lease held but a heartbeat older than HEARTBEAT_STALE_S is
      ``unresponsive`` (stopped with SIGSTOP or Ctrl-Z, or hung: it still owns the run);
    - ``queued`` whose starting process is gone without ever taking the lease is
      ``crashed`` (an engine killed during start-up);
    - a run on another host (only its heartbeat is visible) is ``crashed`` once silent
      for HEARTBEAT_STALE_S."""
    now = time.time() if now is None else now
    if run.status in TERMINAL_STATUSES:
        return run.status
    stale = run.heartbeat_at is not None and now - run.heartbeat_at > HEARTBEAT_STALE_S
    if run.host not in (None, HOST) or run.workspace is None:
        if run.status == "queued":
            return "crashed" if now - run.created_at > QUEUED_START_S else "queued"
        return "crashed" if stale else run.status
    holder = lease_holder(run.workspace, run.id)
    if run.status == "queued":
        if holder is not None:
            return "queued"  # its engine is up and about to mark it running
        if run.pid is not None:
            return "queued" if process_matches(run.pid, run.host, run.proc_start_time) else "crashed"
        return "crashed" if now - run.created_at > QUEUED_START_S else "queued"
    if holder is None:
        return "crashed"
    return "unresponsive" if stale else "running"


def record_engine_process(store: Store, run_id: int, pid: int) -> None:
    """Note on a queued run which process is starting it (see effective_status)."""
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        return  # already gone: the run reads as never started, which is the truth
    store.set_engine_process(run_id, pid, HOST, started)


def engine_command(*args: str, launcher: str = "python") -> list[str]:
    """The engine's command line, with the interpreter running this process (or the
    torchrun beside it), so the dashboard and the engine share one environment."""
    if launcher == "torchrun":
        return [str(Path(sys.executable).with_name("torchrun")), *args]
    return [sys.executable, "-m", "engine", *args]


def launch_engine(workspace: Path, log_path: Path, *args: str,
                  launcher: str = "python") -> subprocess.Popen:
    """Start an engine detached: its own session (so a closed terminal, a dropped SSH
    connection or a dashboard crash never stops it), stdout/stderr to the run's log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            engine_command(*args, "--workspace", str(workspace), launcher=launcher),
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def signal_engine(run: Run, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to the run's engine if, and only if, it is verifiably that process."""
    if not process_matches(run.pid, run.host, run.proc_start_time):
        return False
    try:
        os.kill(run.pid, sig)
    except ProcessLookupError:
        return False
    return True
