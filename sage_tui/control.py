"""Starting, stopping and resuming engine processes from the dashboard.

Runs start as a queued row (so they show at once) and a detached engine process; a
stop is a control row plus SIGTERM to the verified engine process.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from db.processes import effective_status, launch_engine, signal_engine
from db.store import Run, Store, WorkspaceError, run_dir_relative


def start_run(workspace: Path, kind: str, name: str, config: dict, gpus: int = 1) -> Run:
    """Create a queued run and launch its engine, detached. ``gpus`` > 1 runs it under
    torchrun, one process per GPU."""
    with Store.open(workspace) as store:
        run = store.create_run(name, kind, config)
        log_path = workspace / run.log_path
    args = ["start", str(run.id)]
    if gpus > 1:
        args = [f"--nproc-per-node={gpus}", "-m", "engine", *args]
        launch_engine(workspace, log_path, *args, launcher="torchrun")
    else:
        launch_engine(workspace, log_path, *args)
    return run


def stop_run(workspace: Path, run_id: int) -> str:
    """Ask a run to stop; returns a sentence for the user."""
    with Store.open(workspace) as store:
        run = store.get_run(run_id)
        status = effective_status(run)
        if status != "running":
            return f"run {run_id} is {status}: nothing to stop"
        store.request_stop(run_id)
    if signal_engine(run):
        return f"stopping run {run_id} after its current step"
    return f"stop requested for run {run_id}; its engine will read it within seconds"


def resume_run(workspace: Path, run_id: int, checkpoint_id: int | None = None) -> str:
    with Store.open(workspace) as store:
        run = store.get_run(run_id)
        status = effective_status(run)
        if status in ("running", "queued"):
            return f"run {run_id} is {status}: stop it before resuming"
        if run.kind == "eval":
            return "evaluations are not resumed: start a new evaluation from the checkpoints screen"
        log_path = workspace / run.log_path
    args = ["resume", str(run_id)]
    if checkpoint_id is not None:
        args += ["--checkpoint", str(checkpoint_id)]
    launch_engine(workspace, log_path, *args)
    return f"resuming run {run_id}" + (f" from checkpoint {checkpoint_id}" if checkpoint_id else "")


def delete_run(workspace: Path, run_id: int) -> str:
    with Store.open(workspace) as store:
        run = store.get_run(run_id)
        if effective_status(run) == "running":
            raise WorkspaceError(f"run {run_id} is running: stop it before deleting it")
        store.delete_run(run_id)
    shutil.rmtree(workspace / run_dir_relative(run_id), ignore_errors=True)
    return f"deleted run {run_id} and its files"
