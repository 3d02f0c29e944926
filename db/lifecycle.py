"""May this run be resumed, stopped or deleted? One set of rules, read by the command
line (engine/cli.py) and the dashboard (sage_tui/control.py), so both always agree.

Each function returns None when the action is allowed, else one sentence for the user.
The run's lease (db/lease.py) settles every question about a live engine.
"""

from __future__ import annotations

from db.lease import lease_holder
from db.processes import effective_status
from db.store import Run


def _owned_by(run: Run) -> str | None:
    """A sentence when an engine process still holds the run's lease."""
    if run.workspace is None:
        return None
    pid = lease_holder(run.workspace, run.id)
    if pid is None:
        return None
    status = effective_status(run)
    if status == "unresponsive":
        return (f"run {run.id} is unresponsive: its engine (pid {pid}) still owns it but has not "
                f"reported for a while (stopped with Ctrl-Z or SIGSTOP?); continue it "
                f"(`kill -CONT {pid}`) or end it (`kill {pid}`)")
    return f"run {run.id}'s engine (pid {pid}) still owns it: stop it first (`sage-engine stop {run.id}`)"


def _busy(run: Run, doing: str) -> str | None:
    """A sentence when an engine owns the run or is about to: nothing else may act on it."""
    owned = _owned_by(run)
    if owned:
        return owned
    status = effective_status(run)
    if status in ("running", "queued"):
        return f"run {run.id} is {status}: stop it before {doing} it (`sage-engine stop {run.id}`)"
    return None


def uses_test_time_training(config: dict) -> bool:
    """An evaluation adapts to each task first when a budget is set, or when there is no
    checkpoint to evaluate as it is (each task then gets a fresh per-task student). Such
    an evaluation is written task by task, so it can resume at the next unfinished task."""
    return bool(config.get("ttt_steps") or config.get("ttt_seconds")) or config.get("checkpoint_id") is None


EVAL_NOT_RESUMED = ("an evaluation without test-time training is not resumed: start a new "
                    "evaluation of the checkpoint instead")


def resume_refusal(run: Run) -> str | None:
    busy = _busy(run, "resuming")
    if busy:
        return busy
    if run.kind == "eval" and not uses_test_time_training(run.config):
        return EVAL_NOT_RESUMED
    if effective_status(run) == "finished":
        return f"run {run.id} finished: nothing to resume"
    return None


def stop_refusal(run: Run) -> str | None:
    status = effective_status(run)
    if status in ("running", "queued", "unresponsive"):
        return None
    return f"run {run.id} is {status}, not running: nothing to stop"


def delete_refusal(run: Run) -> str | None:
    return _busy(run, "deleting")


def claim_refusal(run: Run, resuming: bool) -> str | None:
    """Checked by an engine that has just taken the run's lease, against the row as it is
    now (another engine may have finished the run since the command was typed). Holding
    the lease, a stored ``running`` can only be an engine that died."""
    if not resuming:
        if run.status != "queued":
            return f"run {run.id} is {run.status}, not queued: use `sage-engine resume {run.id}`"
        return None
    if run.kind == "eval" and not uses_test_time_training(run.config):
        return EVAL_NOT_RESUMED
    if run.status == "finished":
        return f"run {run.id} finished: nothing to resume"
    return None
