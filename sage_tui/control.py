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
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

from db.processes import effective_status, engine_command, launch_engine, signal_engine
from db.store import Run, Store, WorkspaceError, best_checkpoint_id, run_dir_relative

DEMO_NAME = "demo"
# The CPU demo, sized to show the whole product within three minutes on 2 cores: the
# engine's 10 small tasks and tiny student, 2 more tasks held out for validation (val
# pass@2 and the checkpoint's ★), an early checkpoint, and an evaluation when it ends
# (evaluate_demo, started by the dashboard or by the next `sage-tui --demo`).
DEMO_CONFIG: dict = {"val_tasks": 2, "max_steps": 200, "val_every_steps": 50,
                     "checkpoint_every_steps": 50}
DEMO_EVAL_TASKS = 12
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
        if status == "finished" and run.kind != "train":
            return f"run {run_id} finished: there is nothing to resume"
        log_path = workspace / run.log_path
    args = ["resume", str(run_id)]
    if checkpoint_id is not None:
        args += ["--checkpoint", str(checkpoint_id)]
    launch_engine(workspace, log_path, *args)
    return f"resuming run {run_id}" + (f" from checkpoint {checkpoint_id}" if checkpoint_id else "")


def delete_run(workspace: Path, run_id: int) -> str:
    with Store.open(workspace) as store:
        run = store.get_run(run_id)
        if effective_status(run) in ("running", "queued"):
            raise WorkspaceError(f"run {run_id} is {effective_status(run)}: stop it before deleting it")
        store.delete_run(run_id)
    shutil.rmtree(workspace / run_dir_relative(run_id), ignore_errors=True)
    return f"deleted run {run_id} and its files"


def evaluate_checkpoint(workspace: Path, checkpoint_id: int, dataset: str | None = None,
                        max_tasks: int | None = None) -> str:
    """Launch `sage-engine eval` detached. It creates its own eval run, which the runs
    list shows with its progress; its launch output goes to the source run's folder."""
    with Store.open_readonly(workspace) as store:
        checkpoint = store.get_checkpoint(checkpoint_id)
    args = ["eval", "--checkpoint", str(checkpoint_id)]
    if dataset:
        args += ["--dataset", dataset]
    if max_tasks:
        args += ["--max-tasks", str(max_tasks)]
    log_path = workspace / run_dir_relative(checkpoint.run_id) / "eval-launch.log"
    launch_engine(workspace, log_path, *args)
    return (f"evaluating checkpoint {checkpoint_id} (step {checkpoint.step}) on "
            f"{dataset or 'arc1/eval'}: it appears in the runs list as an eval run")


def delete_checkpoint(workspace: Path, checkpoint_id: int) -> str:
    """Delete a checkpoint's file and its row (evaluations made from it stay)."""
    with Store.open(workspace) as store:
        checkpoint = store.get_checkpoint(checkpoint_id)
        (workspace / checkpoint.path).unlink(missing_ok=True)
        store.delete_checkpoint(checkpoint_id)
    return f"deleted checkpoint {checkpoint_id} (step {checkpoint.step})"


def evaluate_demo(workspace: Path, run_id: int) -> str | None:
    """Evaluate a finished demo run's best checkpoint (its last when none scored yet) on
    its dataset, once; None when there is nothing to do."""
    with Store.open_readonly(workspace) as store:
        run = store.get_run(run_id)
        checkpoints = store.checkpoints(run_id)
        evaluated = any(other.kind == "eval" and other.config.get("source_run_id") == run_id
                        for other in store.list_runs())
        if run.status != "finished" or not checkpoints or evaluated:
            return None
        chosen = best_checkpoint_id(checkpoints) or checkpoints[-1].id
    return evaluate_checkpoint(workspace, chosen, run.config.get("dataset") or "arc1/train",
                               DEMO_EVAL_TASKS)


@dataclass
class CheckResult:
    ok: bool
    field: str | None = None
    message: str = ""
    validated: bool = True   # False: the engine could not check these settings
    warnings: list[str] = dataclass_field(default_factory=list)   # e.g. evaluation tasks trained on


def check_config(kind: str, config: dict) -> CheckResult:
    """Ask the engine (``python -m engine check``) whether these settings would start.
    An engine that cannot check a kind answers "could not validate", not an error."""
    args = ["check", "--config-json", json.dumps(config)]
    if kind != "train":
        args[1:1] = ["--kind", kind]
    try:
        proc = subprocess.run(engine_command(*args), capture_output=True, text=True,
                              timeout=CHECK_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return CheckResult(True, validated=False,
                           message=f"the engine took over {CHECK_TIMEOUT_S:.0f}s to check the settings")
    lines = proc.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict) or "ok" not in answer:
        detail = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
        return CheckResult(True, validated=False,
                           message=f"could not validate {kind} settings ({detail[:160]})")
    if answer["ok"]:
        return CheckResult(True, warnings=list(answer.get("warnings") or []))
    return CheckResult(False, answer.get("field"), answer.get("message", "invalid setting"))


CRASH_MESSAGE = "engine process gone: no heartbeat (detected by the dashboard)"


def record_crash(workspace: Path, run_id: int) -> bool:
    """Write a ``crashed`` event and a line at the end of the run's log when the
    dashboard finds its engine gone, once per start; True when it wrote them."""
    from db.queries import last_event_time

    with Store.open(workspace) as store:
        run = store.get_run(run_id)
        if effective_status(run) != "crashed":
            return False
        written = last_event_time(store, run_id, "crashed")
        if written is not None and written >= (run.started_at or 0):
            return False
        store.add_event(run_id, "crashed", CRASH_MESSAGE)
    if run.log_path:
        log = workspace / run.log_path
        if log.parent.is_dir():
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} ERROR dashboard: run {run_id} "
                             f"{CRASH_MESSAGE}\n")
    return True
