"""`sage-tui`: open the dashboard on a workspace.

Only the standard library and db are imported before the app starts, so --help
answers at once; torch is never imported by the dashboard.
"""

from __future__ import annotations

import argparse
import signal
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sage-tui",
        description="Terminal dashboard for SAGE distillation runs: start, watch, stop and "
                    "resume training; browse checkpoints and ARC task predictions.")
    parser.add_argument("--workspace", "-w", default=None,
                        help="workspace folder (default: $SAGE_WORKSPACE, then `workspace` in "
                             "~/.config/sage-tui/config.toml, then ~/sage-workspace)")
    parser.add_argument("--run", type=int, default=None, metavar="ID",
                        help="open this run's curves at start")
    parser.add_argument("--demo", action="store_true",
                        help="start a small CPU training run (if the workspace has none running) "
                             "and open its live curves")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from db.store import Store, WorkspaceError, WorkspaceReadOnly
    from db.workspace import resolve_workspace

    workspace = resolve_workspace(args.workspace)
    try:
        Store.open(workspace).close()  # create and migrate before the app's readers start
    except WorkspaceReadOnly as exc:
        # A read-only workspace is browsed as it is; launching, stopping, deleting say why not.
        if not Store.database_current(workspace) or args.demo:
            print(f"sage-tui: {exc}", file=sys.stderr)
            return 2
    except WorkspaceError as exc:
        print(f"sage-tui: {exc}", file=sys.stderr)
        return 2
    open_run = args.run
    if open_run is not None:
        with Store.open_readonly(workspace) as store:
            if open_run not in {run.id for run in store.list_runs()}:
                print(f"sage-tui: there is no run {open_run} in {workspace}: `sage-engine runs` "
                      f"lists them (or leave out --run)", file=sys.stderr)
                return 2
    if args.demo:
        open_run = start_demo(workspace)
    from sage_tui.app import SageApp

    # The dashboard lives for its terminal: when the terminal hangs up it must end, also when
    # it was started under `nohup` (an ignored hang-up left it spinning on a dead terminal).
    # The engines it launches run in sessions of their own and never see this hang-up.
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    SageApp(workspace, open_run=open_run).run()
    return 0


def start_demo(workspace) -> int:
    """Reuse the demo run: watch it while it runs, resume it when it was stopped or
    crashed, evaluate it when it finished unevaluated; start one when there is none (or
    the last one was evaluated or failed)."""
    from db.processes import effective_status
    from db.store import Store
    from sage_tui import control

    with Store.open(workspace) as store:
        demos = [run for run in store.list_runs() if run.name == "demo" and run.kind == "train"]
    if demos:   # newest first
        run, status = demos[0], effective_status(demos[0])
        if status in ("running", "queued"):
            return run.id
        if status in ("stopped", "crashed"):
            print(f"sage-tui: demo run {run.id} was {status}: "
                  f"{control.resume_run(workspace, run.id)}", file=sys.stderr)
            return run.id
        evaluating = control.evaluate_demo(workspace, run.id)   # ended while no dashboard watched
        if evaluating:
            print(f"sage-tui: demo run {run.id} finished: {evaluating}", file=sys.stderr)
            return run.id
    return control.start_run(workspace, "train", control.DEMO_NAME, control.DEMO_CONFIG).id


if __name__ == "__main__":
    raise SystemExit(main())
