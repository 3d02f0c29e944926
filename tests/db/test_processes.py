"""Liveness and process identity: never signal a process that is not our engine."""

from __future__ import annotations

import signal
import subprocess
import sys

import psutil

from db.processes import HOST, effective_status, process_matches, signal_engine
from tests.db.leases import hold_lease


def _sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    return proc, psutil.Process(proc.pid).create_time()


def test_running_run_is_running_while_its_engine_holds_the_lease_and_crashed_at_once_after(store):
    run = store.create_run("r", "train", {})
    holder = hold_lease(store.workspace, run.id)
    try:
        store.mark_running(run.id, holder.pid, HOST, psutil.Process(holder.pid).create_time())
        assert effective_status(store.get_run(run.id)) == "running"
    finally:
        holder.kill()
        holder.wait()
    # No 30 s wait: the kernel dropped the lease with the process.
    assert effective_status(store.get_run(run.id)) == "crashed"


def test_stale_heartbeat_is_crashed(store):
    run = store.create_run("r", "train", {})
    store.mark_running(run.id, 1, "another-host", 1.0)
    run = store.get_run(run.id)
    assert effective_status(run, now=run.heartbeat_at + 5) == "running"
    assert effective_status(run, now=run.heartbeat_at + 120) == "crashed"


def test_queued_run_that_never_started_is_crashed(store):
    run = store.create_run("r", "train", {})
    assert effective_status(run) == "queued"
    assert effective_status(run, now=run.created_at + 3600) == "crashed"


def test_signal_only_the_verified_process(store):
    proc, started = _sleeper()
    try:
        run = store.create_run("r", "train", {})
        # Same pid, wrong start time: a reused pid must never be signalled.
        store.mark_running(run.id, proc.pid, HOST, started + 100)
        assert not process_matches(proc.pid, HOST, started + 100)
        assert signal_engine(store.get_run(run.id)) is False
        assert proc.poll() is None
        # Wrong host: not ours to signal either.
        store.mark_running(run.id, proc.pid, "elsewhere", started)
        assert signal_engine(store.get_run(run.id)) is False
        store.mark_running(run.id, proc.pid, HOST, started)
        assert signal_engine(store.get_run(run.id), signal.SIGTERM) is True
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
