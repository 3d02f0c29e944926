"""The workspace database: schema, runs, metrics, events, control requests."""

from __future__ import annotations

import json
import random
import sqlite3
import time

import pytest

from db.metric_logger import MetricLogger
from db.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from db.store import Store, WorkspaceError, db_path


def test_new_database_is_wal_with_busy_timeout_and_current_schema(store):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)


def test_forward_migration_keeps_existing_rows(tmp_path):
    workspace = tmp_path / "old"
    workspace.mkdir()
    conn = sqlite3.connect(db_path(workspace), isolation_level=None)
    migrate(conn, target=1)  # a workspace written by version 1 of the schema
    conn.execute("INSERT INTO runs (name, kind, status, created_at) VALUES ('old', 'train', 'finished', 1.0)")
    conn.close()

    with Store.open(workspace) as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [r.name for r in store.list_runs()] == ["old"]
        assert store.checkpoints(1) == []  # a table added by a later migration


def test_database_from_newer_version_is_refused_with_a_clear_message(tmp_path):
    workspace = tmp_path / "future"
    Store.open(workspace).close()
    conn = sqlite3.connect(db_path(workspace), isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(WorkspaceError, match="upgrade sage-tui"):
        Store.open(workspace)
    with pytest.raises(WorkspaceError, match="upgrade sage-tui"):
        Store.open_readonly(workspace)


def test_workspace_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(WorkspaceError, match="is a file"):
        Store.open(path)


def test_not_a_database_is_refused(tmp_path):
    workspace = tmp_path / "garbage"
    workspace.mkdir()
    db_path(workspace).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(WorkspaceError, match="not a readable SAGE TUI database"):
        Store.open(workspace)


def test_run_lifecycle(store):
    run = store.create_run("demo", "train", {"lr": 0.001})
    assert (run.status, run.config, run.log_path) == ("queued", {"lr": 0.001}, f"runs/{run.id:04d}/engine.log")
    store.mark_running(run.id, pid=123, host="h", proc_start_time=1.5, device="cpu")
    store.heartbeat(run.id, step=7, progress=0.5)
    run = store.get_run(run.id)
    assert (run.status, run.pid, run.host, run.proc_start_time, run.step, run.progress) == (
        "running", 123, "h", 1.5, 7, 0.5)
    store.finish_run(run.id, "stopped", "stopped on request")
    run = store.get_run(run.id)
    assert run.status == "stopped" and run.ended_at is not None and run.message == "stopped on request"
    with pytest.raises(WorkspaceError, match="no run 999"):
        store.get_run(999)


def test_append_in_one_batch_and_read_after_cursor(store):
    run = store.create_run("r", "train", {})
    now = time.time()
    assert store.append_metrics(run.id, [("loss", s, 1.0 / (s + 1), now) for s in range(1000)]) == 1000
    chunk = store.read_metrics_after(run.id, "loss", after_step=995)
    assert chunk.steps == [996, 997, 998, 999]
    assert chunk.values[0] == pytest.approx(1 / 997)
    assert store.read_metrics_after(run.id, "loss", after_step=999).steps == []
    assert store.read_metrics_after(run.id, "never-logged").steps == []
    assert store.metric_names(run.id) == ["loss"]


def test_a_step_logged_twice_is_replaced_not_duplicated(store):
    run = store.create_run("r", "train", {})
    store.append_metrics(run.id, [("loss", 5, 1.0, 0.0)])
    store.append_metrics(run.id, [("loss", 5, 2.0, 1.0)])
    chunk = store.read_metrics_after(run.id, "loss")
    assert (chunk.steps, chunk.values) == ([5], [2.0])


def test_truncate_after_resume_point_bumps_revision(store):
    run = store.create_run("r", "train", {})
    store.append_metrics(run.id, [("loss", s, float(s), 0.0) for s in range(1, 21)])
    before = store.read_metrics_after(run.id, "loss").revision
    assert store.truncate_metrics_after(run.id, 12) == 8
    chunk = store.read_metrics_after(run.id, "loss")
    assert chunk.steps == list(range(1, 13))
    assert chunk.revision == before + 1


def test_downsampling_keeps_spikes_and_the_last_point(store):
    run = store.create_run("r", "train", {})
    rng = random.Random(0)
    spike_step, dip_step = 31_337, 77_001
    rows = []
    for step in range(100_000):
        value = 1.0 + rng.random() * 0.01
        value = 50.0 if step == spike_step else -50.0 if step == dip_step else value
        rows.append(("loss", step, value, float(step)))
    store.append_metrics(run.id, rows)
    chunk = store.read_series_downsampled(run.id, "loss", points=200)
    assert len(chunk.steps) <= 202
    assert chunk.steps == sorted(chunk.steps)
    assert (spike_step, 50.0) in zip(chunk.steps, chunk.values)
    assert (dip_step, -50.0) in zip(chunk.steps, chunk.values)
    assert chunk.steps[-1] == 99_999
    # A range asks only for its own rows.
    ranged = store.read_series_downsampled(run.id, "loss", points=200, step_min=1000, step_max=1100)
    assert ranged.steps == list(range(1000, 1101))


def test_metric_logger_batches_in_background_and_flushes(workspace, store):
    run = store.create_run("r", "train", {})
    logger = MetricLogger(workspace, run.id, flush_interval=0.05)
    for step in range(1, 501):
        logger.log(step, {"loss": 1.0 / step, "lr": 0.1})
    logger.flush()
    assert store.read_metrics_after(run.id, "loss").steps == list(range(1, 501))
    logger.log(501, {"loss": 0.0})
    logger.close()
    assert store.read_metrics_after(run.id, "loss", 500).values == [0.0]
    assert logger.rows_written == 1001


def test_events_and_control_requests(store):
    run = store.create_run("r", "train", {})
    store.add_event(run.id, "started", "hello", {"pid": 1})
    store.add_event(run.id, "checkpoint", "saved")
    events = store.events(run.id)
    assert [(e.kind, e.message, e.data) for e in events] == [
        ("started", "hello", {"pid": 1}), ("checkpoint", "saved", None)]
    assert [e.kind for e in store.events(run.id, after_id=events[0].id)] == ["checkpoint"]
    assert store.pending_control(run.id) == []
    store.request_stop(run.id)
    assert store.pending_control(run.id) == ["stop"]
    assert store.pending_control(run.id) == []  # handled once


def test_readonly_connection_cannot_write(workspace, store):
    store.create_run("r", "train", {})
    reader = Store.open_readonly(workspace)
    assert [r.name for r in reader.list_runs()] == ["r"]
    with pytest.raises(sqlite3.OperationalError):
        reader.conn.execute("DELETE FROM runs")
    reader.close()


def test_delete_run_removes_its_rows(store):
    run = store.create_run("r", "train", {})
    other = store.create_run("o", "train", {})
    for r in (run, other):
        store.append_metrics(r.id, [("loss", 1, 1.0, 0.0)])
        store.add_event(r.id, "started", "x")
    store.delete_run(run.id)
    assert [r.id for r in store.list_runs()] == [other.id]
    assert store.events(run.id) == [] and store.read_metrics_after(run.id, "loss").steps == []
    assert store.read_metrics_after(other.id, "loss").steps == [1]


def test_config_round_trips_as_json(store):
    config = {"lr": 1e-4, "task_ids": ["a", "b"], "max_grid": None}
    run = store.create_run("r", "train", config)
    raw = store.conn.execute("SELECT config FROM runs WHERE id = ?", (run.id,)).fetchone()[0]
    assert json.loads(raw) == config == store.get_run(run.id).config


def test_a_stop_request_left_by_a_previous_engine_is_void_for_the_next(store):
    run = store.create_run("r", "train", {})
    store.mark_running(run.id, pid=1, host="h", proc_start_time=1.0)
    store.request_stop(run.id)          # the engine stopped on SIGTERM before reading this
    store.finish_run(run.id, "stopped")
    store.mark_running(run.id, pid=2, host="h", proc_start_time=2.0)  # resumed
    assert store.pending_control(run.id) == []


def test_block_summaries_follow_a_resume_truncation(store):
    run = store.create_run("r", "train", {})
    rows = [("loss", s, 100.0 if s == 40_500 else 1.0 + (s % 7) / 100, float(s)) for s in range(50_000)]
    store.append_metrics(run.id, rows)
    assert 100.0 in store.read_series_downsampled(run.id, "loss", points=100).values
    store.truncate_metrics_after(run.id, 40_200)   # the spike was logged after the resume point
    chunk = store.read_series_downsampled(run.id, "loss", points=100)
    assert 100.0 not in chunk.values and chunk.steps[-1] == 40_200
    # Rewritten steps after the resume point summarise again.
    store.append_metrics(run.id, [("loss", s, -5.0 if s == 45_000 else 1.0, float(s)) for s in range(40_201, 50_000)])
    chunk = store.read_series_downsampled(run.id, "loss", points=100)
    assert (45_000, -5.0) in zip(chunk.steps, chunk.values) and 100.0 not in chunk.values


def test_migration_summarises_metrics_written_before_blocks_existed(tmp_path):
    workspace = tmp_path / "v3"
    workspace.mkdir()
    conn = sqlite3.connect(db_path(workspace), isolation_level=None)
    migrate(conn, target=3)
    conn.execute("INSERT INTO runs (name, kind, status, created_at) VALUES ('old', 'train', 'finished', 1.0)")
    conn.execute("INSERT INTO metric_keys (name) VALUES ('loss')")
    with conn:  # one transaction
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO metrics VALUES (1, 1, ?, ?, ?)",
                         [(s, 9.0 if s == 33_333 else 1.0, float(s)) for s in range(60_000)])
    conn.close()
    with Store.open(workspace) as store:
        chunk = store.read_series_downsampled(1, "loss", points=50)
    assert (33_333, 9.0) in zip(chunk.steps, chunk.values)
    assert len(chunk.steps) <= 52 and chunk.steps[-1] == 59_999


def test_best_checkpoint_is_validated_ranked_by_figures_then_earliest():
    from db.store import Checkpoint, best_checkpoint_id, nothing_solved

    def checkpoint(cid, step, **metrics):
        return Checkpoint(cid, 1, step, None, f"{cid}.pt", 1, metrics, 0.0, "periodic")

    validated = checkpoint(1, 300, val_pass2=0.0, val_pass1=0.0, val_cell_acc=0.40)
    closer = checkpoint(2, 400, val_pass2=0.0, val_pass1=0.0, val_cell_acc=0.45)
    unvalidated_latest = checkpoint(3, 449)            # a stop between validations
    assert best_checkpoint_id([validated, unvalidated_latest]) == 1
    assert best_checkpoint_id([validated, closer, unvalidated_latest]) == 2   # closer answers
    assert best_checkpoint_id([unvalidated_latest]) is None
    assert nothing_solved([validated, closer, unvalidated_latest])
    solved = checkpoint(4, 500, val_pass2=0.25, val_pass1=0.25, val_cell_acc=0.30)
    same_figures_later = checkpoint(5, 600, val_pass2=0.25, val_pass1=0.25, val_cell_acc=0.30)
    assert best_checkpoint_id([closer, solved, same_figures_later]) == 4     # reached first
    assert not nothing_solved([closer, solved])


def test_arc_score_is_the_mean_over_tasks_of_test_inputs_solved():
    from db.store import TaskScore, arc_score

    tasks = [TaskScore(0, "a", 2, 1, 2, 1.0), TaskScore(0, "b", 1, 0, 0, 0.0),
             TaskScore(0, "c", 4, 1, 1, 0.25)]
    assert arc_score(tasks) == pytest.approx(((0.5 + 0 + 0.25) / 3, (1 + 0 + 0.25) / 3))
    assert arc_score([]) == (0.0, 0.0)
