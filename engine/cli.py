"""`sage-engine`: the command line of the engine.

Every command that computes runs as a run in the workspace database, so the dashboard
sees it like any other. Heavy modules (torch) are imported only by the commands that
need them: `runs`, `stop` and `check` answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial
from pathlib import Path

from db import lifecycle
from db.processes import effective_status, launch_engine, record_engine_process, signal_engine
from db.settings import EVAL, TTT_DEFAULT_MODELS, TTT_DEFAULT_STEPS, TTT_PRECISIONS
from db.store import Store, WorkspaceError, WorkspaceReadOnly, db_path
from db.workspace import resolve_workspace
from engine.config import ConfigError, TrainConfig, load_config_file, parse_overrides, parse_settings
from engine.errors import UserError


class UsageError(UserError):
    """A mistake on the command line; printed without a traceback, exit code 2."""


def _workspace_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", "-w", default=None,
                        help="workspace folder (default: $SAGE_WORKSPACE, the config file, "
                             "or ~/sage-workspace)")


def _detach_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detach", action="store_true",
                        help="run in the background, detached from this terminal "
                             "(output goes to the run's engine.log)")


def build_parser(extract_options: bool = True) -> argparse.ArgumentParser:
    """The parser. ``extract_options`` False leaves out `extract`'s options, whose
    definitions import torch: the other commands then answer without loading it."""
    parser = argparse.ArgumentParser(prog="sage-engine", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a student (creates a new run)")
    _workspace_arg(train)
    train.add_argument("--name", default=None, help="run name (default: train-<id>)")
    train.add_argument("--config", default=None, help="JSON file of settings")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override one setting, e.g. --set lr=1e-3 (repeatable)")
    _detach_arg(train)

    start = commands.add_parser("start", help="execute a queued run (used by the dashboard)")
    _workspace_arg(start)
    start.add_argument("run_id", type=int)

    resume = commands.add_parser("resume", help="continue a stopped, failed or crashed run")
    _workspace_arg(resume)
    resume.add_argument("run_id", type=int)
    resume.add_argument("--checkpoint", type=int, default=None,
                        help="checkpoint id to resume from (default: the latest)")
    _detach_arg(resume)

    stop = commands.add_parser("stop", help="ask a run to stop after its current step")
    _workspace_arg(stop)
    stop.add_argument("run_id", type=int)

    runs = commands.add_parser("runs", help="list runs")
    _workspace_arg(runs)
    runs.add_argument("--json", action="store_true", help="print JSON")

    check = commands.add_parser("check", help="validate settings without running (JSON answer)")
    _workspace_arg(check)
    check.add_argument("--kind", choices=("train", "extract", "eval"), default="train")
    check.add_argument("--config-json", default="{}", help="settings as a JSON object")

    extract_parser = commands.add_parser("extract", help="extract teacher features into a store")
    if extract_options:
        from engine import extract

        _workspace_arg(extract_parser)
        extract_parser.add_argument("--name", default=None, help="run name")
        extract.add_arguments(extract_parser)
        _detach_arg(extract_parser)

    evaluate = commands.add_parser(
        "eval", help="evaluate on a dataset (creates an eval run): a checkpoint as it is, or "
                     "with test-time training on each task's demonstrations")
    _workspace_arg(evaluate)
    evaluate.add_argument("--checkpoint", type=int, default=None,
                          help="checkpoint id (without it, each task trains a fresh per-task student)")
    evaluate.add_argument("--dataset", default=None,
                          help="dataset to evaluate on (default: arc1/eval)")
    evaluate.add_argument("--task-ids", default=None,
                          help="only these task ids, comma-separated (e.g. the ones an evaluation failed)")
    evaluate.add_argument("--max-tasks", type=int, default=None)
    evaluate.add_argument("--max-grid", type=int, default=None,
                          help="only tasks whose grids all fit NxN (e.g. 10)")
    evaluate.add_argument("--tta-votes", type=int, default=None,
                          help="augmentations to vote over (default: the run's setting; with "
                               "test-time training: colour permutations per dihedral view, 4)")
    evaluate.add_argument("--ttt-steps", type=int, default=None,
                          help="test-time training steps per task shared by its models (default without a "
                               f"checkpoint: {TTT_DEFAULT_STEPS})")
    evaluate.add_argument("--ttt-seconds", type=float, default=None,
                          help="test-time training budget per task in seconds")
    evaluate.add_argument("--workers", type=int, default=None,
                          help="tasks trained in parallel processes (default: every core given)")
    evaluate.add_argument("--models", type=int, default=None,
                          help=f"per-task students in an ensemble sharing the budget (default {TTT_DEFAULT_MODELS})")
    evaluate.add_argument("--colour-head", type=int, default=None,
                          help="hidden width of a colour-equivariant head for the fresh per-task student (default 0: none)")
    evaluate.add_argument("--changed-weight", type=float, default=1.0,
                          help="per-task student: loss weight of the output cells whose colour differs from "
                               "the input cell's (default 1: every cell alike)")
    evaluate.add_argument("--precision", choices=TTT_PRECISIONS, default=EVAL["ttt_precision"].default,
                          help="per-task student: training arithmetic (bf16: faster on a CPU with native "
                               "bf16, AVX512-BF16 or AMX; default auto: bf16 on such a CPU, else fp32)")
    evaluate.add_argument("--no-rule", action="store_true",
                          help="per-task student: without the rule student (a decision tree that answers first "
                               "where it explains every demonstration; an ablation)")
    evaluate.add_argument("--no-dihedral", action="store_true",
                          help="test-time training without the 8 dihedral transforms (an ablation)")
    evaluate.add_argument("--no-colour-permutations", action="store_true",
                          help="test-time training without recolouring (an ablation)")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--device", default=None,
                          help="auto, cpu, cuda or cuda:N (default: auto, the GPU where there is one; "
                               "a checkpoint's own run's device)")
    _detach_arg(evaluate)

    export = commands.add_parser("export", help="export an evaluation or a run's metrics")
    _workspace_arg(export)
    target = export.add_mutually_exclusive_group(required=True)
    target.add_argument("--evaluation", type=int, help="evaluation id")
    target.add_argument("--run", type=int, help="run id (exports its metrics)")
    export.add_argument("--format", choices=("submission", "csv", "json"), default=None,
                        help="submission (ARC Prize JSON) or csv for evaluations; csv or json for metrics")
    export.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
    return parser


def _run_detached_or_here(args: argparse.Namespace, store: Store, run_id: int,
                          engine_args: list[str], job_factory) -> int:
    run = store.get_run(run_id)
    if getattr(args, "detach", False):
        proc = launch_engine(store.workspace, store.workspace / run.log_path, *engine_args)
        record_engine_process(store, run_id, proc.pid)
        print(f"run {run_id} started in the background (pid {proc.pid}); "
              f"log: {store.workspace / run.log_path}")
        return 0
    from engine.runner import run_job

    record_engine_process(store, run_id, os.getpid())
    store.close()
    return run_job(args.workspace_path, run_id, job_factory())


def _train_settings(args: argparse.Namespace) -> dict:
    values = load_config_file(args.config) if args.config else {}
    values.update(parse_overrides(args.set))
    return TrainConfig.from_dict(values).to_dict()


def _extract_settings(args: argparse.Namespace) -> dict:
    from engine import extract

    try:
        config = extract.config_from_args(args)
        parse_settings("extract", config)
    except ValueError as exc:  # ConfigError included
        raise UsageError(str(exc)) from None
    return config


def cmd_train(args: argparse.Namespace, store: Store) -> int:
    run = store.create_run(args.name or "train", "train", args.settings)
    if not args.name:
        store.update_run(run.id, name=f"train-{run.id}")
    print(f"created run {run.id}", file=sys.stderr)
    return _run_detached_or_here(args, store, run.id, ["start", str(run.id)],
                                 lambda: _job_for("train"))


def _job_for(kind: str, resume_checkpoint: int | None = None, resume: bool = False):
    if kind == "train":
        from engine.train import train_job
        return partial(train_job, resume=resume, checkpoint_id=resume_checkpoint)
    if kind == "extract":
        from engine.extract import extract_job
        return extract_job
    if kind == "eval":
        from engine.evaluate import eval_job
        return eval_job
    raise UsageError(f"unknown run kind {kind!r}")


def cmd_start(args: argparse.Namespace, store: Store) -> int:
    run = store.get_run(args.run_id)
    if run.status != "queued":
        raise UsageError(f"run {run.id} is {run.status}, not queued: use `sage-engine resume {run.id}`")
    from engine.runner import run_job

    store.close()
    return run_job(args.workspace_path, run.id, _job_for(run.kind))


def cmd_resume(args: argparse.Namespace, store: Store) -> int:
    run = store.get_run(args.run_id)
    refusal = lifecycle.resume_refusal(run)
    if refusal:
        raise UsageError(refusal)
    # A train run with no checkpoint yet starts over, which is still what the user wants.
    if args.checkpoint is not None:
        checkpoint = store.get_checkpoint(args.checkpoint)
        if checkpoint.run_id != run.id:
            raise UsageError(f"checkpoint {args.checkpoint} belongs to run {checkpoint.run_id}, not {run.id}")
    engine_args = ["resume", str(run.id)]
    if args.checkpoint is not None:
        engine_args += ["--checkpoint", str(args.checkpoint)]
    if args.detach:
        return _run_detached_or_here(args, store, run.id, engine_args, None)
    from engine.runner import run_job

    store.close()
    return run_job(args.workspace_path, run.id,
                   _job_for(run.kind, resume_checkpoint=args.checkpoint, resume=True), resumed=True)


def cmd_stop(args: argparse.Namespace, store: Store) -> int:
    run = store.get_run(args.run_id)
    refusal = lifecycle.stop_refusal(run)
    if refusal:
        raise UsageError(refusal)
    store.request_stop(run.id)
    signalled = signal_engine(run)
    print(f"stop requested for run {run.id}" + (" (engine signalled)" if signalled else
          " (engine on another host or not verifiable: it will read the request)"))
    return 0


def run_summary(run, status: str) -> dict:
    return {"id": run.id, "name": run.name, "kind": run.kind, "status": status,
            "step": run.step, "total_steps": run.total_steps, "epoch": run.epoch,
            "progress": run.progress, "eta_s": run.eta_s, "device": run.device,
            "pid": run.pid, "host": run.host, "created_at": run.created_at,
            "started_at": run.started_at, "ended_at": run.ended_at,
            "heartbeat_at": run.heartbeat_at, "message": run.message,
            "log_path": run.log_path, "config": run.config}


def cmd_runs(args: argparse.Namespace, store: Store) -> int:
    runs = [(run, effective_status(run)) for run in store.list_runs()]
    if args.json:
        print(json.dumps([run_summary(run, status) for run, status in runs], indent=2))
        return 0
    if not runs:
        print(f"no runs in {store.workspace}")
        return 0
    print(f"{'id':>4}  {'name':<20} {'kind':<8} {'status':<12} {'step':>8}  progress  {'device':<7} reason")
    for run, status in runs:
        progress = f"{run.progress * 100:5.1f}%" if run.progress is not None else "   -"
        reason = run.message or ("engine process gone" if status == "crashed" else "")
        if status == "unresponsive":
            reason = f"engine pid {run.pid} holds the run but stopped reporting"
        print(f"{run.id:>4}  {run.name[:20]:<20} {run.kind:<8} {status:<12} {run.step:>8}  {progress:<8}  "
              f"{run.device or '-':<7} {reason}".rstrip())
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Print {"ok": true, "warnings": [...]} or {"ok": false, "field": ..., "message": ...};
    exit 0 / 1. Checks the settings against the schema, then what depends on this machine
    and the workspace (engine/checks.py): the device exists, datasets resolve, the feature
    store covers the run's examples, the extraction teacher loads. For training, an
    evaluation set that overlaps the training tasks (by content) is a warning."""
    from engine.checks import check_machine

    warnings: list[str] = []
    try:
        values = json.loads(args.config_json)
        settings = parse_settings(args.kind, values)
        check_machine(args.kind, settings, resolve_workspace(args.workspace))
        if args.kind == "train":
            from engine.integrity import contamination_warnings
            warnings = contamination_warnings(settings)
    except json.JSONDecodeError as exc:
        return _check_answer(False, "config", f"not JSON: {exc.msg}")
    except ConfigError as exc:
        return _check_answer(False, exc.field, exc.message)
    except (UserError, WorkspaceError, ValueError) as exc:
        return _check_answer(False, getattr(exc, "field", None) or "config", str(exc))
    return _check_answer(True, warnings=warnings)


def _check_answer(ok: bool, field: str | None = None, message: str | None = None,
                  warnings: list[str] | None = None) -> int:
    answer = {"ok": True, "warnings": warnings or []} if ok else {"ok": False, "field": field,
                                                                   "message": message}
    print(json.dumps(answer))
    return 0 if ok else 1


def cmd_extract(args: argparse.Namespace, store: Store) -> int:
    from engine.teachers import check_teacher

    settings = args.settings
    check_teacher(settings["teacher"], **settings["teacher_options"])  # refuse before the run exists
    run = store.create_run(args.name or "extract", "extract", settings)
    if not args.name:
        store.update_run(run.id, name=f"extract-{run.id}")
    print(f"created run {run.id}", file=sys.stderr)
    return _run_detached_or_here(args, store, run.id, ["start", str(run.id)],
                                 lambda: _job_for("extract"))


def cmd_eval(args: argparse.Namespace, store: Store) -> int:
    from engine.checks import check_eval_tasks

    dataset = args.dataset or "arc1/eval"
    given = {"dataset": dataset, "task_ids": args.task_ids, "max_tasks": args.max_tasks,
             "max_grid": args.max_grid,
             "ttt_steps": args.ttt_steps, "ttt_seconds": args.ttt_seconds, "workers": args.workers,
             "seed": args.seed, "ttt_dihedral": not args.no_dihedral,
             "ttt_colours": not args.no_colour_permutations, "ttt_models": args.models,
             "ttt_colour_head": args.colour_head or 0, "ttt_changed_weight": args.changed_weight,
             "ttt_precision": args.precision, "ttt_rule": not args.no_rule,
             "tta_votes": args.tta_votes, "device": args.device or "auto"}
    if args.checkpoint is None:   # test-time training of a fresh per-task student per task
        name = f"ttt-{dataset if dataset.startswith('arc') else Path(dataset).name}"
    else:
        checkpoint = store.get_checkpoint(args.checkpoint)
        source = store.get_run(checkpoint.run_id)
        given.update(checkpoint_id=checkpoint.id, source_run_id=source.id,
                     device=args.device or source.config.get("device", "auto"))
        if args.tta_votes is None and not (args.ttt_steps or args.ttt_seconds):
            given["tta_votes"] = source.config.get("tta_votes", 0)
        name = f"eval-{source.name}-step{checkpoint.step}" + (
            "-ttt" if args.ttt_steps or args.ttt_seconds else "")
    config = parse_settings("eval", given)
    check_eval_tasks(config)   # an unknown task id is refused before the run exists
    run = store.create_run(name, "eval", config)
    print(f"created run {run.id}", file=sys.stderr)
    return _run_detached_or_here(args, store, run.id, ["start", str(run.id)],
                                 lambda: _job_for("eval"))


def cmd_export(args: argparse.Namespace, store: Store) -> int:
    from engine import export

    if args.evaluation is not None:
        text = export.export_evaluation(store, args.evaluation, args.format or "submission")
        note = export.evaluation_note(store, args.evaluation)
        if note:
            print(f"sage-engine: {note}", file=sys.stderr)
    else:
        text = export.export_metrics(store, args.run, args.format or "csv")
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


COMMANDS = {"train": cmd_train, "start": cmd_start, "resume": cmd_resume, "stop": cmd_stop,
            "runs": cmd_runs, "extract": cmd_extract, "eval": cmd_eval, "export": cmd_export}
# Only commands that make a run may make a workspace, once their settings are checked.
SETTINGS_OF = {"train": _train_settings, "extract": _extract_settings}
READS_ONLY = ("runs", "export")            # these also work in a read-only workspace


def open_workspace(command: str, workspace: Path) -> Store:
    """The workspace's store for ``command``: created only by commands that create runs
    (and then said so), read-only for reading commands in a read-only workspace."""
    if workspace.exists() and not workspace.is_dir():
        raise WorkspaceError(f"workspace {workspace} is a file, not a folder: pass a folder")
    if not db_path(workspace).exists():
        if command not in SETTINGS_OF:
            raise WorkspaceError(f"no SAGE TUI workspace at {workspace} (no {db_path(workspace).name}): "
                                 f"check --workspace, or start a run there with `sage-engine train`")
        store = Store.open(workspace)
        print(f"created workspace {workspace}", file=sys.stderr)
        return store
    try:
        return Store.open(workspace)
    except WorkspaceReadOnly:
        if command in READS_ONLY and Store.database_current(workspace):
            return Store.open_readonly(workspace)
        raise


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(extract_options=argv[:1] == ["extract"]).parse_args(argv)
    try:
        if args.command == "check":
            return cmd_check(args)
        # User-facing errors print one line and a non-zero exit code; nothing else is
        # caught, so a real bug still shows its traceback.
        try:
            args.workspace_path = resolve_workspace(args.workspace)
            if args.command in SETTINGS_OF:
                args.settings = SETTINGS_OF[args.command](args)
            with open_workspace(args.command, args.workspace_path) as store:
                return COMMANDS[args.command](args, store)
        except (UserError, WorkspaceError) as exc:
            print(f"sage-engine: {exc}", file=sys.stderr)
            return 2
    except BrokenPipeError:
        # The reader went away (`sage-engine runs | head`): that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
