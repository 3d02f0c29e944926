"""How much does logging cost? Two figures, measured side by side in one run.

1. Share of training-step time spent logging, for the CPU demo configuration: the
   training loop's own cost of `log_metrics` (a buffer append), and the background
   writer's busy time (SQLite transactions), each as a share of the run's step time.
   Target: < 1%.
2. Raw ingest rate of metric values into the workspace database through the store's
   API, beside plain sqlite3 `executemany` into an equivalent table on the same disk.
   Target: >= 300k values/s.

    .venv/bin/python bench/metrics_logging.py [--steps 60] [--values 2000000]
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


def logging_share(steps: int) -> None:
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
    print(f"training: {steps} steps of the CPU demo configuration in {wall:.1f} s, {rows} metric values logged")
    print(f"  logging in the training loop : {spent['log'] * 1000:8.1f} ms = {spent['log'] / wall:7.3%} of run time  (target < 1%)")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--values", type=int, default=2_000_000)
    args = parser.parse_args()
    ingest(args.values)
    logging_share(args.steps)


if __name__ == "__main__":
    main()
