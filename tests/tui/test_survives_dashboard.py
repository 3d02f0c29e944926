"""Training outlives the dashboard: a real `sage-tui --demo` in a real pseudo-terminal
is killed the way a dropped SSH connection kills it (SIGHUP to its session), and the
engine it launched keeps training; a new dashboard finds it still live."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from db.processes import process_matches
from db.store import Store

from tests.tui.helpers import latest_step, run_ids, run_status, stop_all_engines, wait_for


def _dashboard_in_a_terminal(workspace):
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sage_tui", "--demo", "--workspace", str(workspace)],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"})
    os.close(slave)
    return proc, master


def _read_until(master: int, text: bytes, timeout: float) -> bytes:
    """What the dashboard wrote to its terminal, up to the first ``text``."""
    seen, deadline = b"", time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"the dashboard never wrote {text!r}"
        if select.select([master], [], [], min(left, 0.5))[0]:
            seen += os.read(master, 65536)
    return seen


@pytest.mark.slow
def test_engine_keeps_training_after_the_dashboard_is_gone(workspace):
    """Also under `nohup` (a hang-up ignored by every child): the dashboard restores it."""
    proc, master = _dashboard_in_a_terminal(workspace)
    try:
        run_id = wait_for(lambda: run_ids(workspace), timeout=30, what="the demo run")[0]
        wait_for(lambda: latest_step(workspace, run_id) >= 1, timeout=120, what="training to start")

        # The terminal goes away: hang-up to the dashboard's whole session, then close the pty.
        os.killpg(proc.pid, signal.SIGHUP)
        proc.wait(timeout=20)
        os.close(master)
        master = None

        step_when_dashboard_died = latest_step(workspace, run_id)
        wait_for(lambda: latest_step(workspace, run_id) > step_when_dashboard_died + 1, timeout=90,
                 what="training to continue without the dashboard")
        with Store.open_readonly(workspace) as store:
            run = store.get_run(run_id)
        assert process_matches(run.pid, run.host, run.proc_start_time)
        assert run_status(workspace, run_id) == "running"

        # A new dashboard (sage-tui --demo again) finds the live run instead of starting
        # another: once it draws the run's view it has chosen (no fixed wait for a negative).
        proc, master = _dashboard_in_a_terminal(workspace)
        _read_until(master, b"demo", timeout=60)
        assert run_ids(workspace) == [run_id]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGHUP)
            proc.wait(timeout=20)
        if master is not None:
            os.close(master)
        stop_all_engines(workspace)
    assert run_status(workspace, run_id) == "stopped"
