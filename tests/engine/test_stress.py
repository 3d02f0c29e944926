"""Stress: rounds of "start a run, then race two `sage-engine resume`s and a dashboard
resume (sage_tui.control.resume_run) against it, with random SIGSTOP / SIGCONT / SIGKILL".
Whatever happens: never two engines in one run, no step logged twice with different
values, and the database passes `PRAGMA integrity_check`.

A few short rounds by default, to keep the suite fast; for the full acceptance run:

    SAGE_STRESS_ROUNDS=10 .venv/bin/python -m pytest -q tests/engine/test_stress.py
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import psutil
import pytest

from db.store import Store, db_path
from sage_tui import control

ROUNDS = int(os.environ.get("SAGE_STRESS_ROUNDS", "2"))
ROUND_S = float(os.environ.get("SAGE_STRESS_ROUND_S", "6"))
CONFIG = {"max_tasks": 3, "max_grid": 6, "batch_size": 4, "max_steps": 60, "epochs": 1000,
          "val_tasks": 1, "val_every_steps": 1000, "checkpoint_every_steps": 3, "warmup_steps": 2}


def engine_processes(workspace) -> list[psutil.Process]:
    """This test's engine processes for this workspace (spawned here or by control)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if str(workspace) in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.Error:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Watcher(threading.Thread):
    """Samples the run while the round goes on: which engines have claimed it (their
    "started" events) and are still alive, and every loss value ever visible."""

    def __init__(self, workspace, run_id):
        super().__init__(daemon=True)
        self.workspace, self.run_id = workspace, run_id
        self.done = threading.Event()
        self.owners_at_once: list[set[int]] = []
        self.claimed: set[int] = set()
        self.seen: dict[int, float] = {}
        self.conflicts: list[tuple[int, float, float]] = []

    def run(self):
        with Store.open_readonly(self.workspace) as store:
            while not self.done.is_set():
                claimed = {int(m.group(1)) for e in store.events(self.run_id)
                           if e.kind == "started" and (m := re.search(r"pid (\d+)", e.message))}
                live = {pid for pid in claimed if alive(pid)}
                if len(live) > 1:
                    self.owners_at_once.append(live)
                for newcomer in claimed - self.claimed:  # was an earlier owner still alive?
                    earlier_alive = {pid for pid in self.claimed if alive(pid)}
                    if earlier_alive:
                        self.owners_at_once.append(earlier_alive | {newcomer})
                self.claimed |= claimed
                chunk = store.read_metrics_after(self.run_id, "loss")
                for step, value in zip(chunk.steps, chunk.values):
                    if step in self.seen and self.seen[step] != value:
                        self.conflicts.append((step, self.seen[step], value))
                    self.seen[step] = value
                time.sleep(0.02)


def spawn(workspace, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", *args, "--workspace", str(workspace)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
@pytest.mark.parametrize("round_number", range(ROUNDS))
def test_racing_resumes_and_random_signals_never_give_two_engines(workspace, round_number):
    chance = random.Random(round_number)
    with Store.open(workspace) as store:
        run = store.create_run(f"stress-{round_number}", "train", CONFIG)
    spawned = [spawn(workspace, "start", str(run.id))]
    watcher = Watcher(workspace, run.id)
    watcher.start()
    frozen: set[int] = set()
    try:
        started = time.monotonic()
        while not watcher.seen:  # the race starts once the run is training
            assert time.monotonic() - started < 90, "the first engine never logged a step"
            time.sleep(0.05)
        time.sleep(chance.uniform(0.0, 0.5))
        deadline = time.monotonic() + ROUND_S
        spawned += [spawn(workspace, "resume", str(run.id)), spawn(workspace, "resume", str(run.id))]
        dashboard = threading.Thread(target=control.resume_run, args=(workspace, run.id), daemon=True)
        dashboard.start()
        while time.monotonic() < deadline:
            time.sleep(chance.uniform(0.2, 0.8))
            targets = engine_processes(workspace)
            if not targets:
                spawned += [spawn(workspace, "resume", str(run.id)), spawn(workspace, "resume", str(run.id))]
                threading.Thread(target=control.resume_run, args=(workspace, run.id), daemon=True).start()
                continue
            target = chance.choice(targets)
            action = chance.choice(["stop", "cont", "kill"] if frozen else ["stop", "kill"])
            try:
                if action == "stop":
                    target.send_signal(signal.SIGSTOP)
                    frozen.add(target.pid)
                elif action == "cont":
                    pid = chance.choice(sorted(frozen))
                    os.kill(pid, signal.SIGCONT)
                    frozen.discard(pid)
                else:
                    target.send_signal(signal.SIGKILL)
            except (psutil.Error, ProcessLookupError):
                pass
        dashboard.join(timeout=30)
    finally:
        for proc in engine_processes(workspace):
            try:
                proc.send_signal(signal.SIGKILL)
                proc.send_signal(signal.SIGCONT)
            except psutil.Error:
                pass
        for proc in spawned:
            proc.wait(timeout=30)
        psutil.wait_procs(psutil.Process().children(recursive=True), timeout=10)
        time.sleep(0.1)
        watcher.done.set()
        watcher.join(timeout=30)
    assert watcher.owners_at_once == [], "two engines owned the run at once"
    # The owner token is the second line of defence: with the lease working it never fires.
    assert "no longer owned" not in (workspace / "runs" / f"{run.id:04d}" / "engine.log").read_text()
    assert watcher.conflicts == [], "a step was logged twice with different values"
    assert watcher.seen, "no step was ever logged: the round proved nothing"
    conn = sqlite3.connect(db_path(workspace))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
