"""One engine per run: leases, the owner token, ids never reused, lifecycle rules,
liveness from the lease. Real processes hold real locks."""

from __future__ import annotations

import os
import signal
import sqlite3

import psutil
import pytest

from db import lifecycle
from db.lease import Lease, LeaseHeld, filesystem_of, lease_holder, network_filesystem
from db.processes import HOST, effective_status, record_engine_process
from db.schema import MIGRATIONS
from db.store import HEARTBEAT_STALE_S, OwnershipLost, Store, WorkspaceError, db_path
from tests.db.leases import hold_lease


def test_a_second_lease_is_refused_naming_the_holder_and_kill_9_frees_it(store):
    run = store.create_run("r", "train", {})
    holder = hold_lease(store.workspace, run.id)
    try:
        with pytest.raises(LeaseHeld, match=f"engine pid {holder.pid}"):
            Lease.acquire(store.workspace, run.id)
        assert lease_holder(store.workspace, run.id) == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lease_holder(store.workspace, run.id) is None
    Lease.acquire(store.workspace, run.id).release()


def test_a_frozen_engine_keeps_its_lease_and_reads_unresponsive_not_crashed(store):
    run = store.create_run("r", "train", {})
    holder = hold_lease(store.workspace, run.id)
    try:
        store.mark_running(run.id, holder.pid, HOST, psutil.Process(holder.pid).create_time(),
                           owner=holder.token)
        os.kill(holder.pid, signal.SIGSTOP)
        frozen = store.get_run(run.id)
        later = frozen.heartbeat_at + HEARTBEAT_STALE_S + 5
        assert effective_status(frozen, now=later) == "unresponsive"
        assert lease_holder(store.workspace, run.id) == holder.pid
        # No resume (it would be a second engine), no delete; stop is allowed.
        assert f"pid {holder.pid}" in lifecycle.resume_refusal(frozen)
        assert f"pid {holder.pid}" in lifecycle.delete_refusal(frozen)
        assert lifecycle.stop_refusal(frozen) is None
        with pytest.raises(LeaseHeld):
            Lease.acquire(store.workspace, run.id)
    finally:
        holder.kill()
        os.kill(holder.pid, signal.SIGCONT)
        holder.wait()
    assert effective_status(store.get_run(run.id)) == "crashed"
    assert lifecycle.resume_refusal(store.get_run(run.id)) is None


def test_an_engine_killed_during_start_up_is_crashed_at_once(store):
    """Today: queued for 2 minutes, `resume` says stop it first, `stop` says not running."""
    run = store.create_run("r", "train", {})
    starting = psutil.Popen(["sleep", "30"])
    record_engine_process(store, run.id, starting.pid)
    assert effective_status(store.get_run(run.id)) == "queued"
    starting.kill()
    starting.wait()
    run = store.get_run(run.id)
    assert effective_status(run) == "crashed"
    assert lifecycle.resume_refusal(run) is None
    assert "nothing to stop" in lifecycle.stop_refusal(run)


def test_finished_runs_and_evaluations_are_not_resumed(store):
    train = store.create_run("t", "train", {})
    store.finish_run(train.id, "finished")
    assert "nothing to resume" in lifecycle.resume_refusal(store.get_run(train.id))
    evaluation = store.create_run("e", "eval", {"checkpoint_id": 3})
    store.finish_run(evaluation.id, "failed", "x")
    assert "not resumed" in lifecycle.resume_refusal(store.get_run(evaluation.id))
    # Test-time training writes task by task: a stopped one resumes at its next task.
    adapting = store.create_run("ttt", "eval", {"checkpoint_id": None, "ttt_steps": 300})
    store.finish_run(adapting.id, "stopped", "stopped on request")
    assert lifecycle.resume_refusal(store.get_run(adapting.id)) is None
    store.finish_run(adapting.id, "finished")
    assert "nothing to resume" in lifecycle.resume_refusal(store.get_run(adapting.id))


def test_a_store_that_lost_ownership_cannot_write(store, workspace):
    run = store.create_run("r", "train", {})
    store.mark_running(run.id, os.getpid(), HOST, 1.0, owner="old-token")
    old_engine = Store.open(workspace).act_as_owner("old-token")
    old_engine.append_metrics(run.id, [("loss", 1, 0.5, 1.0)])
    store.mark_running(run.id, os.getpid(), HOST, 1.0, owner="new-token")  # another engine took over
    for write in (lambda: old_engine.append_metrics(run.id, [("loss", 2, 0.4, 2.0)]),
                  lambda: old_engine.heartbeat(run.id, step=2),
                  lambda: old_engine.add_event(run.id, "checkpoint", "x"),
                  lambda: old_engine.add_checkpoint(run.id, 2, 0.0, "p", 1, {}, "periodic"),
                  lambda: old_engine.finish_run(run.id, "finished")):
        with pytest.raises(OwnershipLost):
            write()
    assert store.read_metrics_after(run.id, "loss").steps == [1]
    assert store.get_run(run.id).status == "running" and store.checkpoints(run.id) == []
    old_engine.close()


def test_run_ids_are_never_reused(store):
    first = store.create_run("a", "train", {})
    second = store.create_run("b", "train", {})
    store.delete_run(second.id)
    assert store.create_run("c", "train", {}).id == second.id + 1
    store.delete_run(first.id)
    assert store.create_run("d", "train", {}).id == second.id + 2


def test_migration_v5_keeps_old_runs_and_continues_above_every_id_seen(tmp_path):
    path = tmp_path / "ws"
    path.mkdir()
    conn = sqlite3.connect(db_path(path), isolation_level=None)
    for version, script in enumerate(MIGRATIONS[:4]):
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    conn.execute("INSERT INTO runs (id, name, kind, status, created_at) VALUES (3, 'old', 'train', 'finished', 1)")
    conn.execute("INSERT INTO events (run_id, t, kind, message) VALUES (7, 1, 'x', 'left by deleted run 7')")
    conn.close()
    with Store.open(path) as store:
        assert [(r.id, r.name, r.status) for r in store.list_runs()] == [(3, "old", "finished")]
        assert store.create_run("new", "train", {}).id == 8


def test_delete_is_refused_while_an_engine_holds_the_lease(workspace):
    from sage_tui import control

    with Store.open(workspace) as store:
        run = store.create_run("r", "train", {})
        store.finish_run(run.id, "stopped")
    holder = hold_lease(workspace, run.id)
    try:
        with pytest.raises(WorkspaceError, match=f"pid {holder.pid}"):
            control.delete_run(workspace, run.id)
    finally:
        holder.kill()
        holder.wait()
    assert "deleted run" in control.delete_run(workspace, run.id)
    assert not (workspace / "runs" / f"{run.id:04d}").exists()


def test_a_newer_database_is_refused_and_left_byte_identical(tmp_path):
    path = tmp_path / "ws"
    Store.open(path).close()
    conn = sqlite3.connect(db_path(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = db_path(path).read_bytes()
    with pytest.raises(WorkspaceError, match="schema version 99"):
        Store.open(path)
    assert db_path(path).read_bytes() == before
    assert sorted(p.name for p in path.iterdir()) == ["sage.db"]  # no -wal, no -shm


def test_lease_probe_never_makes_an_engine_fail(store):
    """Readers probe with a shared lock; an engine taking the lease meanwhile retries."""
    import threading

    run = store.create_run("r", "train", {})
    Lease.acquire(store.workspace, run.id).release()
    done = threading.Event()

    def probe():
        while not done.is_set():
            lease_holder(store.workspace, run.id)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(50):
            Lease.acquire(store.workspace, run.id).release()
    finally:
        done.set()
        prober.join()


def test_network_filesystems_are_recognised_from_the_mount_table(tmp_path):
    # The machine's own table: a local folder is not on a network filesystem.
    assert network_filesystem(tmp_path) is None
    # STAND-IN: no NFS server here, so a mount table as Linux writes it for one.
    table = ("/dev/sda1 / ext4 rw 0 0\n"
             "server:/export /mnt/shared nfs4 rw,vers=4.2 0 0\n"
             "//nas/share /mnt/nas cifs rw 0 0\n")
    assert network_filesystem("/mnt/shared/ws", table) == "nfs4"
    assert network_filesystem("/mnt/nas", table) == "cifs"
    assert network_filesystem("/mnt/sharedother", table) is None
    assert filesystem_of("/home/x", table) == ("/", "ext4")


def test_an_engine_that_lost_its_run_writes_no_checkpoint_file(store, workspace, tmp_path):
    from engine.checkpoints import save_checkpoint

    run = store.create_run("r", "train", {})
    store.mark_running(run.id, os.getpid(), HOST, 1.0, owner="new-token")
    old_engine = Store.open(workspace).act_as_owner("old-token")
    run_dir = workspace / "runs" / f"{run.id:04d}"
    with pytest.raises(OwnershipLost):
        save_checkpoint(old_engine, workspace, run.id, run_dir, {"step": 3}, 3, 0.0, {}, "stop")
    assert not (run_dir / "checkpoints").exists()
    old_engine.close()
