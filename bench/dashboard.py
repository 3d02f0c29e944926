"""Dashboard benchmarks (not timed tests): each figure printed beside its target.

    python bench/dashboard.py [--workspace DIR] [--cpu-seconds 60]

Builds a workspace of 20 runs and 5M metric rows (one run with 1M steps) unless
--workspace already holds one, then measures:
  1. first paint of the runs screen, cold (a real `sage-tui` in a pseudo-terminal,
     interpreter start and imports included) and warm (in-process, App.run_test);
  2. opening the 1M-step run's curves (screen pushed -> every plot of the first group drawn);
  3. one live refresh of a curves screen while a writer appends rows: database time
     and the whole refresh (read + update + plot rendering);
  4. CPU of a real dashboard process watching a live run over a minute (psutil
     cpu_times), and its resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import math
import os
import pty
import random
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from db.lease import Lease  # noqa: E402
from db.store import Store  # noqa: E402

RUNS = 20
TOTAL_ROWS = 5_000_000
BIG_STEPS = 1_000_000
KEYS = ("loss", "loss_task", "loss_mse", "loss_cosine", "train_cell_acc", "train_fg_acc", "train_exact", "lr",
        "grad_norm", "examples_per_s", "epoch")
BATCH = 250_000
TERMINAL = (160, 48)


def report(name: str, value: float, unit: str, target: float) -> bool:
    ok = value <= target
    print(f"  {name:<52} {value:9.1f} {unit:<3}  target <= {target:g} {unit}  "
          f"{'OK' if ok else 'MISSED'}", flush=True)
    return ok


# ------------------------------------------------------------------ workspace
def _rows(keys, steps, every, t0):
    for step in steps:
        if step % every:
            continue
        decay = math.exp(-step / 200_000)
        for key in keys:
            yield key, step, decay + random.random() * 0.05, t0 + step * 0.05


def build_workspace(workspace: Path) -> tuple[int, float]:
    """20 runs, 5M rows: the big run logs loss every step and 10 keys every 10 steps;
    the 19 others share the rest. Returns the big run's id and the seconds writing took."""
    started = time.perf_counter()
    now = time.time()
    written = 0
    with Store.open(workspace) as store:
        big = store.create_run("big-1M", "train", {"epochs": 100})
        store.update_run(big.id, status="finished", step=BIG_STEPS, total_steps=BIG_STEPS,
                         progress=1.0, epoch=100.0, started_at=now - 50_000, ended_at=now - 100,
                         heartbeat_at=now - 100, device="cuda:0")
        for start in range(0, BIG_STEPS, BATCH):
            steps = range(start, start + BATCH)
            rows = list(_rows(("loss",), steps, 1, now - 50_000))
            rows += list(_rows(KEYS[1:], steps, 10, now - 50_000))
            written += store.append_metrics(big.id, rows)
        per_run = (TOTAL_ROWS - written) // (RUNS - 1)
        steps_per_run = per_run // len(KEYS)
        for index in range(RUNS - 1):
            run = store.create_run(f"run-{index:02d}", "train", {"lr": 0.001 * (index + 1)})
            store.update_run(run.id, status=random.choice(["finished", "stopped", "failed"]),
                             step=steps_per_run, total_steps=steps_per_run, progress=1.0,
                             started_at=now - 9000, ended_at=now - 8000, heartbeat_at=now - 8000,
                             device="cpu")
            for start in range(0, steps_per_run, BATCH // len(KEYS)):
                steps = range(start, min(steps_per_run, start + BATCH // len(KEYS)))
                written += store.append_metrics(run.id, list(_rows(KEYS, steps, 1, now - 9000)))
    seconds = time.perf_counter() - started
    print(f"  built {RUNS} runs, {written:,} metric rows in {seconds:.1f} s "
          f"({written / seconds:,.0f} rows/s)", flush=True)
    return big.id, seconds


class LiveWriter:
    """Plays a training engine in its own process (so it does not share this process's
    interpreter lock with the dashboard): a running run that logs every key 10 times a
    second and beats its heart, marked with the writer's pid, host and start time."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        with Store.open(workspace) as store:
            self.run_id = store.create_run("live", "train", {}).id
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--write-live", str(self.run_id),
                                      "--workspace", str(self.workspace)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with Store.open_readonly(self.workspace) as store:
                if store.get_run(self.run_id).step >= 5:
                    return
            time.sleep(0.2)
        raise RuntimeError("the live writer did not start")

    def stop(self, status: str = "stopped") -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        with Store.open(self.workspace) as store:
            store.finish_run(self.run_id, status)


def write_live(workspace: Path, run_id: int, steps_per_s: float = 10.0) -> None:
    """The live writer's process: runs until terminated."""
    lease = Lease.acquire(workspace, run_id)  # as an engine: the run is live while this is held
    with Store.open(workspace) as store:
        store.mark_running(run_id, os.getpid(), socket.gethostname(),
                           psutil.Process().create_time(), device="cpu", owner=lease.token)
        step = 0
        while True:
            time.sleep(1 / steps_per_s)
            step += 1
            now = time.time()
            store.append_metrics(run_id, [(k, step, 1 / (1 + step * 0.01) + random.random() * 0.02, now)
                                          for k in KEYS])
            if step % 5 == 0:
                store.heartbeat(run_id, step=step, progress=min(1.0, step / 10_000))


# --------------------------------------------------------- real terminal runs
class DashboardInPty:
    """`python -m sage_tui` in a pseudo-terminal, its output drained by a thread."""

    def __init__(self, workspace: Path, *args: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", TERMINAL[1], TERMINAL[0], 0, 0))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sage_tui", "--workspace", str(workspace), *args],
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "TERM": "xterm-256color"})
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if not ready:
                if self.proc.poll() is not None:
                    return
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.output += data
                del self.output[:-200_000]

    def wait_for(self, text: bytes, timeout: float) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self.lock:
                if text in self.output:
                    return time.perf_counter() - self.started
            time.sleep(0.005)
        raise RuntimeError(f"{text!r} did not appear within {timeout} s")

    def close(self) -> None:
        os.killpg(self.proc.pid, 15)
        self.proc.wait(timeout=20)
        os.close(self.master)


# -------------------------------------------------------------- in-process runs
async def measure_in_process(workspace: Path, big_run: int, writer: LiveWriter) -> dict:
    from sage_tui.app import SageApp
    from sage_tui.data import load_run
    from sage_tui.screens.run import RunScreen
    from sage_tui.screens.runs import RunsScreen
    from sage_tui.widgets.curve import CurvePlot

    results = {}
    started = time.perf_counter()
    app = SageApp(workspace)
    async with app.run_test(size=TERMINAL) as pilot:
        while not (isinstance(app.screen, RunsScreen) and len(app.screen.shown) >= RUNS):
            await asyncio.sleep(0.005)
        await pilot.pause(0)
        results["runs_warm"] = time.perf_counter() - started
        await pilot.pause(1.0)   # a user reads the table before opening a run

        # Opening the 1M-step run: pushed -> every plot of its first group has its series.
        started = time.perf_counter()
        app.open_run(big_run)
        screen = None
        while True:
            screen = app.screen
            if (isinstance(screen, RunScreen) and screen.curves.plotted_keys
                    and all((big_run, k) in screen.curves.series for k in screen.curves.plotted_keys)):
                break
            await asyncio.sleep(0.005)
        await pilot.pause(0)   # the plots paint
        results["open_big"] = time.perf_counter() - started
        results["open_big_keys"] = list(screen.curves.plotted_keys)
        app.pop_screen()

        # Live refreshes of the live run's curves, while the writer appends.
        app.open_run(writer.run_id)
        while not (isinstance(app.screen, RunScreen) and app.screen.curves.plotted_keys
                   and all((writer.run_id, k) in app.screen.curves.series for k in app.screen.curves.plotted_keys)):
            await asyncio.sleep(0.01)
        screen = app.screen
        while screen.poll_timer is None:   # wait for the poll in flight to finish
            await asyncio.sleep(0.01)
        screen.poll_timer.stop()   # this loop drives the refreshes itself
        db_times, totals = [], []
        for _ in range(20):
            await asyncio.sleep(0.5)
            began = time.perf_counter()
            snapshot = await asyncio.to_thread(
                load_run, workspace, writer.run_id, screen.curves.series_requests(screen.snapshot),
                screen.curves.plot_points, screen.last_event_id)
            screen.show_snapshot(RunScreen.Loaded(snapshot))
            screen.poll_timer.stop()   # show_snapshot re-armed it
            for plot in screen.query(CurvePlot):
                if plot.region.height:   # what is on screen is rendered
                    plot.render()
            totals.append(time.perf_counter() - began)
            db_times.append(snapshot.db_seconds)
        results["refresh_db"] = statistics.median(db_times)
        results["refresh_all"] = statistics.median(totals)
        results["refresh_max"] = max(totals)
    return results


def measure_cpu(workspace: Path, run_id: int, seconds: float) -> tuple[float, float, float]:
    dashboard = DashboardInPty(workspace, "--run", str(run_id))
    try:
        dashboard.wait_for(b"loss", timeout=30)
        time.sleep(3)   # settle: first loads done
        proc = psutil.Process(dashboard.proc.pid)
        before = proc.cpu_times()
        peak_rss = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            peak_rss = max(peak_rss, proc.memory_info().rss)
            time.sleep(1)
        after = proc.cpu_times()
        used = (after.user - before.user) + (after.system - before.system)
        return 100 * used / seconds, peak_rss / 2**20, proc.memory_info().rss / 2**20
    finally:
        dashboard.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", help="reuse or build the workspace here (default: a temp dir)")
    parser.add_argument("--cpu-seconds", type=float, default=60.0)
    parser.add_argument("--write-live", type=int, help=argparse.SUPPRESS)  # the writer process
    args = parser.parse_args()
    if args.write_live is not None:
        write_live(Path(args.workspace), args.write_live)
        return 0
    temp = None
    if args.workspace:
        workspace = Path(args.workspace)
    else:
        temp = tempfile.mkdtemp(prefix="sage-bench-")
        workspace = Path(temp) / "workspace"
    try:
        print(f"workspace: {workspace}")
        existing = []
        if (workspace / "sage.db").exists():
            with Store.open(workspace) as store:
                existing = [r for r in store.list_runs() if r.name == "big-1M"]
        big_run = existing[0].id if existing else build_workspace(workspace)[0]

        ok = True
        print("figures (target beside each):")
        dashboard = DashboardInPty(workspace)
        try:
            cold = dashboard.wait_for(b"run-00", timeout=30)
        finally:
            dashboard.close()
        ok &= report("runs screen first paint, cold (process start)", cold * 1000, "ms", 1000)

        writer = LiveWriter(workspace)
        writer.start()
        try:
            results = asyncio.run(measure_in_process(workspace, big_run, writer))
            ok &= report("runs screen first paint, warm (in process)", results["runs_warm"] * 1000, "ms", 1000)
            ok &= report(f"open the 1M-step run's curves ({len(results['open_big_keys'])} plots)",
                         results["open_big"] * 1000, "ms", 500)
            ok &= report("one live refresh: database time (median)", results["refresh_db"] * 1000, "ms", 50)
            ok &= report("one live refresh: in all (median)", results["refresh_all"] * 1000, "ms", 100)
            print(f"  {'(slowest live refresh in all)':<52} {results['refresh_max'] * 1000:9.1f} ms")
            cpu, peak_rss, rss = measure_cpu(workspace, writer.run_id, args.cpu_seconds)
            ok &= report(f"CPU watching a live run, mean over {args.cpu_seconds:.0f} s", cpu, "%", 10)
            ok &= report("resident memory, peak during that minute", peak_rss, "MB", 200)
        finally:
            writer.stop()
        print("all targets met" if ok else "some targets missed")
        return 0 if ok else 1
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
