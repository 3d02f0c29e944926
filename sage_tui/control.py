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

from db import lifecycle
from db.lease import Lease
from db.processes import (effective_status, engine_command, launch_engine, record_engine_process,
                          signal_engine)
from db.store import Run, Store, WorkspaceError, best_checkpoint_id, run_dir_relative

DEMO_NAME = "demo"
# The CPU demo, sized to show the whole product within three minutes on 2 cores: the
# engine's 10 small tasks and tiny student, 2 more tasks held out for validation (val
# pass@2 and the checkpoint's ★), an early checkpoint, and an evaluation when it ends
# (evaluate_demo, started by the dashboard or by the next `sage-tui --demo`).
DEMO_CONFIG: dict = {"val_tasks": 2, "max_steps": 200, "val_every_steps": 50,
                     "checkpoint_every_steps": 50}
DEMO_EVAL_TASKS = 12
# ... and held-out tasks it can solve: test-time training of a fresh per-task student on
# the first 6 small ARC-AGI-1 evaluation tasks (half of them solved, in about a minute).
DEMO_TTT: dict = {"dataset": "arc1/eval", "max_grid": 10, "max_tasks": 6, "ttt_steps": 300,
                  "ttt_models": 1, "workers": 1}
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


# Evaluation settings and the `sage-engine eval` flag that passes each.
EVAL_FLAGS = {"checkpoint_id": "--checkpoint", "dataset": "--dataset", "max_tasks": "--max-tasks",
              "max_grid": "--max-grid", "tta_votes": "--tta-votes", "ttt_steps": "--ttt-steps",
              "ttt_seconds": "--ttt-seconds", "ttt_models": "--models",
              "ttt_colour_head": "--colour-head", "ttt_changed_weight": "--changed-weight",
              "ttt_precision": "--precision", "workers": "--workers", "device": "--device"}


def evaluate_checkpoint(workspace: Path, checkpoint_id: int | None, dataset: str | None = None,
                        max_tasks: int | None = None, **options) -> str:
    """Launch `sage-engine eval` detached, once the engine has checked the settings: a
    checkpoint as it is, or with test-time training (``ttt_steps`` / ``ttt_seconds``;
    without a checkpoint, a fresh per-task student learns each task). It creates its own
    eval run, which the runs list shows with its progress."""
    wanted = {"checkpoint_id": checkpoint_id, "dataset": dataset, "max_tasks": max_tasks, **options}
    wanted = {key: value for key, value in wanted.items() if value is not None}
    verdict = check_config("eval", wanted, workspace)
    if not verdict.ok:  # refused, or the check itself failed: nothing is launched
        raise WorkspaceError(f"not evaluated: {verdict.message}")
    args = ["eval"]
    for key, value in wanted.items():
        args += [EVAL_FLAGS[key], str(value)]
    if checkpoint_id is None:
        log_path, what = workspace / "runs" / "eval-launch.log", "a fresh per-task student per task"
    else:
        with Store.open_readonly(workspace) as store:
            checkpoint = store.get_checkpoint(checkpoint_id)
        log_path = workspace / run_dir_relative(checkpoint.run_id) / "eval-launch.log"
        what = f"checkpoint {checkpoint_id} (step {checkpoint.step})"
    launch_engine(workspace, log_path, *args)
    training = " with test-time training" if options.get("ttt_steps") or options.get("ttt_seconds") \
        or checkpoint_id is None else ""
    return (f"evaluating {what}{training} on {dataset or 'arc1/eval'}: it appears in the runs "
            f"list as an eval run")


def delete_checkpoint(workspace: Path, checkpoint_id: int) -> str:
    """Delete a checkpoint's file and its row (evaluations made from it stay)."""
    with Store.open(workspace) as store:
        checkpoint = store.get_checkpoint(checkpoint_id)
        (workspace / checkpoint.path).unlink(missing_ok=True)
        store.delete_checkpoint(checkpoint_id)
    return f"deleted checkpoint {checkpoint_id} (step {checkpoint.step})"


def evaluate_demo(workspace: Path, run_id: int) -> str | None:
    """Evaluate a finished demo run's best checkpoint (its last when none scored yet) on
    its dataset, and start an evaluation with test-time training on held-out tasks, once;
    None when there is nothing to do."""
    with Store.open_readonly(workspace) as store:
        run = store.get_run(run_id)
        checkpoints = store.checkpoints(run_id)
        evaluated = any(other.kind == "eval" and other.config.get("source_run_id") == run_id
                        for other in store.list_runs())
        if run.status != "finished" or not checkpoints or evaluated:
            return None
        chosen = best_checkpoint_id(checkpoints) or checkpoints[-1].id
    evaluated = evaluate_checkpoint(workspace, chosen, run.config.get("dataset") or "arc1/train",
                                    DEMO_EVAL_TASKS)
    adapted = evaluate_checkpoint(workspace, None, **DEMO_TTT)
    return f"{evaluated}; and {adapted}"


@dataclass
class CheckResult:
    ok: bool
    field: str | None = None
    message: str = ""
    validated: bool = True   # False: the engine could not check these settings
    warnings: list[str] = dataclass_field(default_factory=list)   # e.g. evaluation tasks trained on


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
