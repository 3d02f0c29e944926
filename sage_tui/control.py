"""Starting, stopping, resuming and deleting engine runs from the dashboard, and
checking settings with the engine before a launch.

Runs start as a queued row (so they show at once) and a detached engine process; a
stop is a control row plus SIGTERM to the verified engine process. Everything here may
block (process launches, subprocesses, file removal): call it from thread workers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from db import lifecycle
from db.lease import Lease
from db.processes import engine_command, launch_engine, record_engine_process, signal_engine
from db.store import Run, Store, WorkspaceError, run_dir_relative

DEMO_CONFIG: dict = {}  # the engine's defaults are the CPU demo: 10 small tasks, tiny student
CHECK_TIMEOUT_S = 60.0


def start_run(workspace: Path, kind: str, name: str, config: dict, gpus: int = 1) -> Run:
    """Create a queued run and launch its engine, detached. ``gpus`` > 1 runs it under
    torchrun, one process per GPU."""
    with Store.open(workspace) as store:
        run = store.create_run(name, kind, config)
        log_path = workspace / run.log_path
        args = ["start", str(run.id)]
        if gpus > 1:
            args = ["--standalone", f"--nproc-per-node={gpus}", "-m", "engine", *args]
            proc = launch_engine(workspace, log_path, *args, launcher="torchrun")
        else:
            proc = launch_engine(workspace, log_path, *args)
        record_engine_process(store, run.id, proc.pid)
    return run


def stop_run(workspace: Path, run_id: int) -> str:
    """Ask a run to stop; returns a sentence for the user."""
    with Store.open(workspace) as store:
        run = store.get_run(run_id)
        refusal = lifecycle.stop_refusal(run)
        if refusal:
            return refusal
        store.request_stop(run_id)
    if signal_engine(run):
        return f"stopping run {run_id} after its current step"
    return f"stop requested for run {run_id}; its engine will read it within seconds"


def resume_run(workspace: Path, run_id: int, checkpoint_id: int | None = None) -> str:
    """Launch an engine to resume the run, if the rules allow; the engine itself takes
    the run's lease, so two resumes racing still give one engine."""
    with Store.open(workspace) as store:
        run = store.get_run(run_id)
        refusal = lifecycle.resume_refusal(run)
        if refusal:
            return refusal
        log_path = workspace / run.log_path
    args = ["resume", str(run_id)]
    if checkpoint_id is not None:
        args += ["--checkpoint", str(checkpoint_id)]
    launch_engine(workspace, log_path, *args)
    return f"resuming run {run_id}" + (f" from checkpoint {checkpoint_id}" if checkpoint_id else "")


def delete_run(workspace: Path, run_id: int) -> str:
    """Delete a run's rows and folder while holding its lease, so no engine can start
    on it meanwhile; refused while an engine owns it."""
    with Store.open(workspace) as store:
        refusal = lifecycle.delete_refusal(store.get_run(run_id))
        if refusal:
            raise WorkspaceError(refusal)
        lease = Lease.acquire(workspace, run_id)
        try:
            store.delete_run(run_id)
            shutil.rmtree(workspace / run_dir_relative(run_id), ignore_errors=True)
        finally:
            lease.release()
    return f"deleted run {run_id} and its files"


@dataclass
class CheckResult:
    ok: bool
    field: str | None = None
    message: str = ""
    validated: bool = True   # False: the engine could not check these settings


def check_config(kind: str, config: dict, workspace: Path | None = None) -> CheckResult:
    """Ask the engine (``python -m engine check``) whether these settings would start in
    this workspace on this machine. ``validated`` is False when the check itself failed
    (a crash, a timeout): then nothing may be launched, and ``message`` says why."""
    args = ["check", "--kind", kind, "--config-json", json.dumps(config)]
    if workspace is not None:
        args += ["--workspace", str(workspace)]
    try:
        proc = subprocess.run(engine_command(*args), capture_output=True, text=True,
                              timeout=CHECK_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return CheckResult(False, validated=False,
                           message=f"the engine took over {CHECK_TIMEOUT_S:g}s to check the settings")
    lines = proc.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict) or "ok" not in answer:
        detail = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
        return CheckResult(False, validated=False,
                           message=f"could not check the {kind} settings ({detail[:160]})")
    if answer["ok"]:
        return CheckResult(True)
    return CheckResult(False, answer.get("field"), answer.get("message", "invalid setting"))
