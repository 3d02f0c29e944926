"""Engine processes: launching them detached, checking they are alive, signalling them.

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

from db.store import HEARTBEAT_STALE_S, Run

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
    """The stored status, except that a running run whose engine vanished (on this host)
    or whose heartbeat is older than HEARTBEAT_STALE_S is reported ``crashed``."""
    now = time.time() if now is None else now
    if run.status == "queued" and run.pid is None and now - run.created_at > QUEUED_START_S:
        return "crashed"  # launched but never came up: its log says why
    if run.status != "running":
        return run.status
    if run.host == HOST and run.pid is not None and not process_matches(
            run.pid, run.host, run.proc_start_time):
        return "crashed"
    if run.heartbeat_at is not None and now - run.heartbeat_at > HEARTBEAT_STALE_S:
        return "crashed"
    return "running"


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
