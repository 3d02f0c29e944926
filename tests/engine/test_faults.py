"""Every failure leaves a reason: a full disk (a real, small tmpfs; and a real file-size
limit), NaN settings, a task file nested too deeply, a read-only workspace."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from db.store import Store, db_path
from engine.arc import load_folder
from engine.checkpoints import load_state
from engine.runner import run_job
from engine.train import train_job


def engine(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("setting", ["grad_clip=nan", "weight_decay=inf", "lr=NaN", "w_mse=-inf"])
def test_non_finite_settings_are_refused(workspace, setting):
    result = engine("train", "--set", setting, "--workspace", str(workspace))
    assert result.returncode == 2 and "must be a finite number" in result.stderr, result.stderr
    check = engine("check", "--config-json", json.dumps({setting.split("=")[0]: float(setting.split("=")[1])}))
    assert json.loads(check.stdout)["field"] == setting.split("=")[0]


def test_a_task_file_nested_too_deeply_is_skipped_not_fatal(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (tmp_path / "good.json").write_text(json.dumps(
        {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]], "output": [[2]]}]}))
    dataset = load_folder(tmp_path)
    assert [t.id for t in dataset.tasks] == ["good"]
    assert "nested too deeply" in str(dataset.problems[0])


ATOMIC_WRITE_UNDER_A_SIZE_LIMIT = """
import json, resource, signal, sys
from pathlib import Path
from db.fsutil import DiskFull, atomic_write
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # the write then fails with EFBIG
target = Path(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    atomic_write(target, lambda handle: handle.write(b"x" * (4 << 20)))
    print(json.dumps({"raised": None}))
except DiskFull as exc:
    print(json.dumps({"raised": "DiskFull", "message": str(exc)}))
"""


def test_atomic_write_that_runs_out_of_room_leaves_the_old_file_and_no_tmp(tmp_path):
    target = tmp_path / "step_00000004.pt"
    target.write_bytes(b"the earlier, whole file")
    result = subprocess.run([sys.executable, "-c", ATOMIC_WRITE_UNDER_A_SIZE_LIMIT, str(target)],
                            capture_output=True, text=True, timeout=60)
    answer = json.loads(result.stdout)
    assert answer["raised"] == "DiskFull" and "free" in answer["message"], result.stderr
    assert target.read_bytes() == b"the earlier, whole file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


@pytest.fixture
def small_disk(tmp_path):
    """A real 48 MiB tmpfs (needs root; skipped elsewhere)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount_point)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_fails_the_run_with_its_reason_and_keeps_earlier_checkpoints(small_disk, fast_train_config):
    workspace = small_disk / "ws"
    config = {**fast_train_config, "max_steps": 400, "epochs": 1000, "checkpoint_every_steps": 2,
              "val_every_steps": 1000, "keep_last": 100}
    with Store.open(workspace) as store:
        run = store.create_run("t", "train", config)

    def fill_disk_after_first_checkpoint():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with Store.open_readonly(workspace) as store:
                if store.checkpoints(run.id):
                    break
            time.sleep(0.02)
        try:   # not one byte left (under load the disk may be full before the file opens)
            with open(small_disk / "ballast", "wb") as ballast:
                while True:
                    ballast.write(b"\0" * (1 << 16))
                    ballast.flush()
        except OSError:
            pass

    filler = threading.Thread(target=fill_disk_after_first_checkpoint)
    filler.start()
    code = run_job(workspace, run.id, train_job)
    filler.join()
    assert code == 1
    with Store.open_readonly(workspace) as store:
        ended = store.get_run(run.id)
        checkpoints = store.checkpoints(run.id)
        steps = store.read_metrics_after(run.id, "loss").steps
    assert ended.status == "failed"
    assert "disk full" in ended.message and "free" in ended.message and "tmpfs" in ended.message, ended.message
    assert "\n" not in ended.message
    assert checkpoints, "the first checkpoint was kept"
    for checkpoint in checkpoints:
        assert load_state(workspace / checkpoint.path)["step"] == checkpoint.step
    assert steps[: checkpoints[0].step] == list(range(1, checkpoints[0].step + 1))
    leftovers = [p.name for p in (workspace / "runs").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    conn = sqlite3.connect(db_path(workspace))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


@pytest.fixture
def read_only_workspace(tmp_path):
    """A workspace with one finished run, then made read-only for real: a read-only bind
    mount as root (root ignores permissions), the permission bits otherwise."""
    workspace = tmp_path / "ws"
    with Store.open(workspace) as store:
        run = store.create_run("r", "train", {})
        store.append_metrics(run.id, [("loss", 1, 0.5, 1.0)])
        store.finish_run(run.id, "finished")
    view = tmp_path / "ro"
    view.mkdir()
    if os.geteuid() == 0:
        bound = subprocess.run(["mount", "--bind", str(workspace), str(view)], capture_output=True)
        remounted = bound.returncode == 0 and subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(view)], capture_output=True).returncode == 0
        if not remounted:
            pytest.skip("cannot make a read-only bind mount here")
        yield view
        subprocess.run(["umount", "-l", str(view)], check=False)
    else:
        os.chmod(workspace / "sage.db", 0o444)
        os.chmod(workspace, 0o555)
        yield workspace
        os.chmod(workspace, 0o755)


def test_a_read_only_workspace_reads_and_says_read_only_for_writes(read_only_workspace):
    listed = engine("runs", "--workspace", str(read_only_workspace), "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["status"] for r in json.loads(listed.stdout)] == ["finished"]
    exported = engine("export", "--run", "1", "--workspace", str(read_only_workspace))
    assert exported.returncode == 0 and "loss" in exported.stdout, exported.stderr
    for args in (["train"], ["resume", "1"], ["stop", "1"]):
        result = engine(*args, "--workspace", str(read_only_workspace))
        assert result.returncode == 2 and "is read-only" in result.stderr, (args, result.stderr)
        assert "move it aside" not in result.stderr


async def test_the_dashboard_browses_a_read_only_workspace(read_only_workspace):
    from textual.widgets import DataTable

    from db.store import WorkspaceReadOnly
    from sage_tui import control
    from sage_tui.app import SageApp
    from tests.tui.helpers import wait_until

    app = SageApp(read_only_workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.screen.query(DataTable) and app.screen.query_one(DataTable).row_count == 1,
                         timeout=20, what="the run listed")
        assert [n.message for n in app._notifications if n.severity == "error"] == []
    with pytest.raises(WorkspaceReadOnly, match="is read-only"):
        control.delete_run(read_only_workspace, 1)
