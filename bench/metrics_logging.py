"""How much does logging cost? Three figures, measured side by side in one run.

1. Share of training-step time spent logging, for the CPU demo configuration: the
   training loop's own cost of `log_metrics` (a buffer append), and the background
   writer's busy time (SQLite transactions), each as a share of the run's step time.
   Target: < 1%.
2. Raw ingest rate of metric values into the workspace database through the store's
   API, beside plain sqlite3 `executemany` into an equivalent table on the same disk.
   Target: >= 300k values/s.
3. The metric logger's policies side by side: the current one (write at once when
   idle, batch under load, bounded buffer) and the fixed-interval one used before
   (``--flush-interval``, default 0.25 s, unbounded buffer): how soon a point logged by
   an idle writer is visible to a reader (target: 30 ms median), the training loop's
   cost per logged value, and how far behind the writer is after a tight loop of
   ``--tight-steps`` steps (with the peak number of rows waiting in memory).

    .venv/bin/python bench/metrics_logging.py [--steps 60] [--values 2000000]
        [--flush-interval 0.25] [--tight-steps 100000] [--only-logger]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.store import Store  # noqa: E402


def logging_share(steps: int, label: str, logger_options: dict) -> None:
    import functools

    import db.metric_logger as metric_logger
    import engine.runner as runner
    from engine.train import train_job

    spent = {"log": 0.0, "write": 0.0}
    original_log = runner.RunContext.log_metrics
    original_append = metric_logger.Store.append_metrics

    def timed_log(self, step, values):
        start = time.perf_counter()
        original_log(self, step, values)
        spent["log"] += time.perf_counter() - start

    def timed_append(self, run_id, rows):
        start = time.perf_counter()
        try:
            return original_append(self, run_id, rows)
        finally:
            spent["write"] += time.perf_counter() - start

    runner.RunContext.log_metrics = timed_log
    metric_logger.Store.append_metrics = timed_append
    runner.MetricLogger = functools.partial(metric_logger.MetricLogger, **logger_options)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            with Store.open(tmp) as store:
                # The demo's defaults (10 small tasks, tiny student), cut to a fixed step count.
                run = store.create_run("bench", "train", {"max_steps": steps, "val_every_steps": 10**6,
                                                          "checkpoint_every_steps": 10**6})
            start = time.perf_counter()
            runner.run_job(Path(tmp), run.id, train_job)
            wall = time.perf_counter() - start
            with Store.open_readonly(tmp) as store:
                rows = sum(len(store.read_metrics_after(run.id, k).steps) for k in store.metric_names(run.id))
    finally:
        runner.RunContext.log_metrics = original_log
        metric_logger.Store.append_metrics = original_append
        runner.MetricLogger = metric_logger.MetricLogger
    print(f"training, {label} logger: {steps} steps of the CPU demo configuration in {wall:.1f} s, "
          f"{rows} metric values logged")
    print(f"  logging in the training loop : {spent['log'] * 1000:8.1f} ms = {spent['log'] / wall:7.3%} of run time, "
          f"{spent['log'] / rows * 1e6:6.1f} µs per value  (target < 1%)")
    print(f"  background writer busy       : {spent['write'] * 1000:8.1f} ms = {spent['write'] / wall:7.3%} of run time  (target < 1%)")


def row_batches(values: int, batch: int, keys: int):
    """The same rows for both writers: (key index, step) pairs, ``batch`` at a time."""
    written, step = 0, 0
    while written < values:
        rows = []
        while len(rows) < batch:
            step += 1
            rows.extend((k, step) for k in range(keys))
        written += len(rows)
        yield rows


def ingest(values: int, batch: int = 50_000) -> None:
    keys = [f"key{k}" for k in range(20)]
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        with Store.open(Path(tmp) / "store") as store:
            run = store.create_run("bench", "train", {})
            start = time.perf_counter()
            written = 0
            for rows in row_batches(values, batch, len(keys)):
                written += store.append_metrics(run.id, [(keys[k], step, 0.5, now) for k, step in rows])
            ours = written / (time.perf_counter() - start)

        conn = sqlite3.connect(Path(tmp) / "plain.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("CREATE TABLE metrics (run_id INTEGER, key_id INTEGER, step INTEGER, value REAL, "
                     "wall_time REAL, PRIMARY KEY (run_id, key_id, step)) WITHOUT ROWID")
        start = time.perf_counter()
        written = 0
        for rows in row_batches(values, batch, len(keys)):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?)",
                             [(1, k, step, 0.5, now) for k, step in rows])
            conn.execute("COMMIT")
            written += len(rows)
        plain = written / (time.perf_counter() - start)
        conn.close()
    print(f"ingest of {values:,} values (20 keys, batches of {batch:,}):")
    print(f"  Store.append_metrics        : {ours:12,.0f} values/s  (target >= 300,000)")
    print(f"  plain sqlite3 executemany   : {plain:12,.0f} values/s  (same schema, same disk)")
    print(f"  ratio store / plain         : {ours / plain:12.2f}")


def visibility_delays(logger, reader, run_id: int, points: int = 40) -> list[float]:
    """Seconds from log() until a reader sees the point, the writer idle in between (for
    a random while, so a fixed-period writer is met at a random phase)."""
    import random

    pause = random.Random(0)
    delays = []
    for step in range(1, points + 1):
        logged = time.perf_counter()
        logger.log(step, {"loss": 1.0 / step})
        while reader.read_metrics_after(run_id, "loss", step - 1).last_step != step:
            time.sleep(0.0002)
        delays.append(time.perf_counter() - logged)
        time.sleep(pause.uniform(0.01, 0.3))
    return delays


def paced_loop(logger, steps: int, work_s: float = 0.0002, values_per_step: int = 5) -> float:
    """µs the training loop spends in log() per logged value, when each step also does
    ``work_s`` of work (a fast training step): the cost a real loop pays."""
    keys = [f"p{i}" for i in range(values_per_step)]
    spent = 0.0
    for step in range(1, steps + 1):
        until = time.perf_counter() + work_s
        while time.perf_counter() < until:
            pass
        start = time.perf_counter()
        logger.log(step, {key: 0.5 for key in keys})
        spent += time.perf_counter() - start
    logger.flush()
    return spent / (steps * values_per_step) * 1e6


def tight_loop(logger, steps: int, values_per_step: int = 5) -> tuple[float, float, int]:
    """(µs of log() per logged value, seconds the writer is behind at the end, peak rows
    buffered) for a loop that does nothing but log."""
    keys = [f"k{i}" for i in range(values_per_step)]
    peak, start = 0, time.perf_counter()
    for step in range(1, steps + 1):
        logger.log(step, {key: 0.5 for key in keys})
        if step % 1000 == 0:
            peak = max(peak, len(logger._buffer))
    logged = time.perf_counter()
    logger.flush()
    behind = time.perf_counter() - logged
    return (logged - start) / (steps * values_per_step) * 1e6, behind, peak


def logger_policies(flush_interval: float, tight_steps: int) -> None:
    import statistics

    from db.metric_logger import MetricLogger

    policies = {"current (idle: <= 10 ms; load: batches)": {},
                f"old (every {flush_interval:g} s, unbounded)": {"flush_interval": flush_interval,
                                                                  "max_buffered": None}}
    print(f"metric logger policies (one run each): visibility with an idle writer; log() cost per "
          f"value in a loop of 0.2 ms steps; a tight loop of {tight_steps:,} steps x 5 values "
          f"(cost, writer behind at its end, peak rows in memory)")
    print(f"  {'policy':<42} {'visible p50':>11} {'p90':>8} {'paced µs/v':>10} {'tight µs/v':>10} "
          f"{'behind':>8} {'peak rows':>10}")
    for label, options in policies.items():
        with tempfile.TemporaryDirectory() as tmp:
            with Store.open(tmp) as store:
                run = store.create_run("bench", "train", {})
            reader = Store.open_readonly(tmp)
            logger = MetricLogger(tmp, run.id, **options)
            delays = sorted(visibility_delays(logger, reader, run.id))
            paced = paced_loop(logger, 10_000)
            cost, behind, peak = tight_loop(logger, tight_steps)
            logger.close()
            reader.close()
        p50, p90 = statistics.median(delays), delays[int(len(delays) * 0.9)]
        print(f"  {label:<42} {p50 * 1000:8.1f} ms {p90 * 1000:5.1f} ms {paced:10.2f} {cost:10.2f} "
              f"{behind:6.2f} s {peak:10,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--values", type=int, default=2_000_000)
    parser.add_argument("--flush-interval", type=float, default=0.25,
                        help="period of the old fixed-interval policy, for comparison")
    parser.add_argument("--tight-steps", type=int, default=100_000)
    parser.add_argument("--only-logger", action="store_true", help="only the logger policies")
    args = parser.parse_args()
    logger_policies(args.flush_interval, args.tight_steps)
    if args.only_logger:
        return
    ingest(args.values)
    logging_share(args.steps, "current", {})
    logging_share(args.steps, f"old ({args.flush_interval:g} s)",
                  {"flush_interval": args.flush_interval, "max_buffered": None})


if __name__ == "__main__":
    main()
