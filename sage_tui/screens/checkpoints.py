"""A run's checkpoints (evaluate, resume from, delete) and the evaluations made from them
(open their tasks, compare two)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from db import settings
from db.store import Checkpoint, is_validated
from sage_tui import control, data_tasks
from sage_tui.data_tasks import CheckpointsView, EvaluationRow
from sage_tui.screens.compare import CompareScreen
from sage_tui.screens.confirm import ConfirmScreen
from sage_tui.screens.tasks import TasksScreen
from sage_tui.screens.base import COMMON_KEYS, SageScreen, SageTable, selected_row_key

POLL_S = 2.0
DEFAULT_DATASET = settings.EVAL["dataset"].default


def size_text(size: int | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


def metric_text(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def percent(value: float | None) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) and value == value else "-"


def best_text(view: CheckpointsView) -> str:
    """What the ★ means here: the best validated checkpoint, and plainly when no
    checkpoint solved anything (then ★ marks the closest answers, not a success)."""
    best = next((c for c in view.checkpoints if c.id == view.best_id), None)
    if best is None:
        return "no validated checkpoint yet"
    if view.nothing_solved:
        baseline = best.metrics.get("val_baseline_cell_acc")
        return (f"[yellow]no checkpoint solved any validation task[/]: [b]★[/b] step {best.step} "
                f"has the best cell accuracy ({metric_text(best.metrics, 'val_cell_acc')}"
                + (f", no-learning baseline {baseline:.3f})" if baseline is not None else ")"))
    return f"[b]★[/b] best: step {best.step} (val pass@2 {best.metrics['val_pass2']:.3f})"


def unvalidated_text(checkpoints: list[Checkpoint]) -> str:
    steps = [str(c.step) for c in checkpoints if not is_validated(c)]
    return f"\nnot validated (no figures of their own): step {', '.join(steps)}" if steps else ""


def clock(t: float) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(t))


class EvaluateScreen(ModalScreen[dict | None]):
    """Dataset, task limit, test-time training steps and students for a new evaluation; enter
    starts it, esc cancels. It answers the evaluation settings chosen."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="evaluate.cancel")]
    DEFAULT_CSS = """
    EvaluateScreen { align: center middle; }
    EvaluateScreen > Vertical { width: 64; height: auto; border: thick $accent; padding: 0 2;
                                background: $surface; }
    EvaluateScreen Input { margin: 0; }
    """

    def __init__(self, checkpoint: Checkpoint, dataset: str, max_tasks: int | None) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.dataset = dataset
        self.max_tasks = max_tasks

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Evaluate checkpoint {self.checkpoint.id} (step {self.checkpoint.step})")
            yield Label(f"dataset ({settings.EVAL['dataset'].help}):")
            yield Input(self.dataset, id="evaluate-dataset")
            yield Label("at most this many tasks (empty: all):")
            yield Input(str(self.max_tasks or ""), id="evaluate-max-tasks", type="integer")
            yield Label("test-time training steps per task (empty: none):")
            yield Input("", id="evaluate-ttt-steps", type="integer")
            yield Label(f"students per task, votes pooled (empty: {settings.TTT_DEFAULT_MODELS}):")
            yield Input("", id="evaluate-ttt-models", type="integer")
            yield Static("", id="evaluate-error", classes="field-error")
            yield Label("[b]enter[/b] start   [b]esc[/b] cancel")

    def on_mount(self) -> None:
        self.query_one("#evaluate-dataset", Input).focus()

    @on(Input.Submitted)
    def submitted(self) -> None:
        """Checked by the eval settings schema (and a folder must exist) before the dialog
        closes; the engine checks the rest before it launches."""
        dataset = self.query_one("#evaluate-dataset", Input).value.strip() or DEFAULT_DATASET
        limit = self.query_one("#evaluate-max-tasks", Input).value.strip()
        steps = self.query_one("#evaluate-ttt-steps", Input).value.strip()
        models = self.query_one("#evaluate-ttt-models", Input).value.strip()
        try:
            parsed = settings.EVAL.parse({"dataset": dataset, "max_tasks": limit, "ttt_steps": steps,
                                          "ttt_models": models})
        except settings.SettingError as exc:
            self.query_one("#evaluate-error", Static).update(f"↳ {exc}")
            return
        if parsed["dataset"] not in settings.DATASETS and not Path(dataset).expanduser().is_dir():
            self.query_one("#evaluate-error", Static).update(f"↳ dataset: no folder at {dataset}")
            return
        self.dismiss({key: parsed[key] for key in ("dataset", "max_tasks", "ttt_steps", "ttt_models")})

    def action_cancel(self) -> None:
        self.dismiss(None)


class CheckpointsScreen(SageScreen):
    POLL_S = POLL_S
    BINDINGS = [
        Binding("e", "evaluate", "Evaluate", id="checkpoints.evaluate"),
        Binding("t", "tasks", "Tasks", id="checkpoints.tasks"),
        Binding("r", "resume", "Resume", id="checkpoints.resume"),
        Binding("c", "compare", "Compare", id="checkpoints.compare"),
        Binding("d", "delete", "Delete", show=False, id="checkpoints.delete"),
        Binding("space", "mark", "Mark an evaluation to compare", show=False, id="checkpoints.mark"),
        Binding("w", "toggle_all_runs", "Evaluations of all runs / this run", show=False,
                id="checkpoints.all_runs"),
        *COMMON_KEYS,
    ]

    DEFAULT_CSS = """
    CheckpointsScreen #checkpoints-summary, CheckpointsScreen #evaluations-heading {
        height: auto; padding: 0 1; background: $boost;
    }
    CheckpointsScreen #checkpoints-table { height: 1fr; }
    CheckpointsScreen #evaluations-table { height: 1fr; }
    """

    @dataclass
    class Loaded(Message):
        view: CheckpointsView

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.view: CheckpointsView | None = None
        self.all_runs = False
        self.marked: list[int] = []       # evaluation ids marked for comparison, oldest first
        self.shown: tuple | None = None   # what the tables hold, to redraw only on change

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading…", id="checkpoints-summary")
        yield SageTable(id="checkpoints-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="evaluations-heading")
        yield SageTable(id="evaluations-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        checkpoints = self.query_one("#checkpoints-table", DataTable)
        for label, key, width in (("", "best", 1), ("id", "id", 3), ("step", "step", 6),
                                  ("epoch", "epoch", 5), ("saved", "saved", 11),
                                  ("pass@2", "pass2", 6), ("pass@1", "pass1", 6),
                                  ("cells", "cells", 5), ("size", "size", 8), ("why", "reason", 8)):
            checkpoints.add_column(label, key=key, width=width)
        evaluations = self.query_one("#evaluations-table", DataTable)
        for label, key, width in (("", "mark", 1), ("id", "id", 3), ("run", "source", 8),
                                  ("step", "step", 5), ("dataset", "dataset", 8),
                                  ("tasks", "tasks", 5), ("pass@2", "pass2", 6),
                                  ("pass@1", "pass1", 6), ("unseen", "unseen", 6),
                                  ("cells", "cells", 4), ("base", "base", 4)):
            evaluations.add_column(label, key=key, width=width)
        checkpoints.focus()
        self.poll()

    # ---------------------------------------------------------------- polling
    @work(thread=True, exclusive=True, group="checkpoints-poll", exit_on_error=False)
    def load(self) -> None:
        self.post_message(self.Loaded(data_tasks.load_checkpoints(self.app.workspace, self.run_id,
                                                                  self.all_runs)))

    @on(Loaded)
    def show_view(self, message: Loaded) -> None:
        self.view = message.view
        self.redraw()
        self.rearm_poll()

    def redraw(self) -> None:
        view = self.view
        shown = (tuple((c.id, c.size_bytes, str(c.metrics)) for c in view.checkpoints), view.best_id,
                 tuple(r.evaluation.id for r in view.evaluations), tuple(self.marked), self.all_runs)
        if shown != self.shown:
            self.shown = shown
            self.fill_checkpoints(view)
            self.fill_evaluations(view)
        run = view.run
        is_evaluation = run.kind == "eval"   # it makes no checkpoints: its own evaluation is the point
        if is_evaluation:
            summary = "an evaluation run makes no checkpoints; its evaluation is listed below (enter: its tasks)"
        else:
            summary = f"{len(view.checkpoints)} checkpoints   {best_text(view)}{unvalidated_text(view.checkpoints)}"
        self.query_one("#checkpoints-summary", Static).update(f"run {run.id} [b]{run.name}[/b] ({run.kind}): {summary}")
        scope = "all runs" if self.all_runs else ("this run" if is_evaluation else "this run's checkpoints")
        marked = ", ".join(str(i) for i in self.marked) or "none"
        self.query_one("#evaluations-heading", Static).update(
            f"Evaluations of {scope} ({len(view.evaluations)})  marked: {marked}  "
            f"[dim](w: {'this run' if self.all_runs else 'all runs'})[/]\n"
            f"[dim]unseen: pass@2 without the tasks the checkpoint trained on · cells: cell "
            f"accuracy · base: the no-learning baseline's · * pass@1 only (one attempt)[/]")
        self.sub_title = f"run {run.id} checkpoints"

    def fill_checkpoints(self, view: CheckpointsView) -> None:
        table = self.query_one("#checkpoints-table", DataTable)
        keep = self.selected_key(table)
        table.clear()
        for c in view.checkpoints:
            table.add_row("★" if c.id == view.best_id else "", str(c.id), str(c.step),
                          f"{c.epoch:.2f}" if c.epoch is not None else "-", clock(c.created_at),
                          metric_text(c.metrics, "val_pass2"), metric_text(c.metrics, "val_pass1"),
                          metric_text(c.metrics, "val_cell_acc"), size_text(c.size_bytes),
                          c.reason or "-", key=str(c.id))
        self.restore_cursor(table, keep)
        if not view.checkpoints:
            table.add_row("", "", "", "", "none yet", key="none")

    def fill_evaluations(self, view: CheckpointsView) -> None:
        table = self.query_one("#evaluations-table", DataTable)
        keep = self.selected_key(table)
        table.clear()
        for row in view.evaluations:
            e = row.evaluation
            one_attempt = "*" if e.attempts_per_input == 1 else ""
            unseen = e.score_unseen
            table.add_row("●" if e.id in self.marked else "", str(e.id), row.source_name,
                          str(row.checkpoint_step) if row.checkpoint_step is not None else "-",
                          e.dataset, str(e.n_tasks), f"{e.score_pass2:.3f}{one_attempt}",
                          f"{e.score_pass1:.3f}",
                          "-" if unseen is None else f"{unseen:.3f}" + ("!" if e.overlapping_tasks else ""),
                          percent(e.summary.get("cell_acc")), percent(e.baseline("cell_acc")),
                          key=str(e.id))
        self.restore_cursor(table, keep)

    selected_key = staticmethod(selected_row_key)

    @staticmethod
    def restore_cursor(table: DataTable, key: str | None) -> None:
        if key is not None and key in table.rows:  # a deleted row leaves the cursor at the top
            table.move_cursor(row=table.get_row_index(key))

    # ---------------------------------------------------------------- selection
    def selected_checkpoint(self) -> Checkpoint | None:
        key = self.selected_key(self.query_one("#checkpoints-table", DataTable))
        if self.view is None or key in (None, "none"):
            self.notify("no checkpoint selected", severity="warning")
            return None
        return next((c for c in self.view.checkpoints if str(c.id) == key), None)

    def selected_evaluation(self) -> EvaluationRow | None:
        key = self.selected_key(self.query_one("#evaluations-table", DataTable))
        if self.view is None or key is None:
            self.notify("no evaluation yet: press e on a checkpoint to make one", severity="warning")
            return None
        return next((r for r in self.view.evaluations if str(r.evaluation.id) == key), None)

    # ---------------------------------------------------------------- actions
    def action_evaluate(self) -> None:
        checkpoint = self.selected_checkpoint()
        if checkpoint is None:
            return
        config = self.view.run.config
        dataset = config.get("eval_dataset") or DEFAULT_DATASET
        max_tasks = config.get("eval_max_tasks")

        def start(choice: dict | None) -> None:
            if choice is not None:
                self.act(lambda: control.evaluate_checkpoint(self.app.workspace, checkpoint.id, **choice))

        self.app.push_screen(EvaluateScreen(checkpoint, dataset, max_tasks), start)

    def action_resume(self) -> None:
        checkpoint = self.selected_checkpoint()
        if checkpoint is not None:
            self.act(lambda: control.resume_run(self.app.workspace, self.run_id,
                                                               checkpoint.id))

    def action_delete(self) -> None:
        checkpoint = self.selected_checkpoint()
        if checkpoint is None:
            return
        best = " — it is the best one" if checkpoint.id == self.view.best_id else ""

        def answered(yes: bool | None) -> None:
            if yes:
                self.act(lambda: control.delete_checkpoint(self.app.workspace, checkpoint.id))

        self.app.push_screen(ConfirmScreen(
            f"Delete checkpoint {checkpoint.id} (step {checkpoint.step}, "
            f"{size_text(checkpoint.size_bytes)}){best}? Its file is removed."), answered)

    def action_tasks(self) -> None:
        row = self.selected_evaluation()
        if row is not None:
            self.app.push_screen(TasksScreen(row.evaluation.id))

    def action_mark(self) -> None:
        row = self.selected_evaluation()
        if row is None:
            return
        evaluation_id = row.evaluation.id
        if evaluation_id in self.marked:
            self.marked.remove(evaluation_id)
        else:
            self.marked = (self.marked + [evaluation_id])[-2:]
        self.redraw()

    def action_compare(self) -> None:
        """Compare the two marked evaluations (older as A); with one marked, compare it
        with the evaluation under the cursor."""
        pair = list(self.marked)
        if len(pair) < 2:
            row = self.selected_evaluation()
            if row is not None and row.evaluation.id not in pair:
                pair.append(row.evaluation.id)
        if len(pair) < 2:
            self.notify("mark two evaluations with space (or one, and put the cursor on another)",
                        severity="warning")
            return
        a, b = sorted(pair)
        self.app.push_screen(CompareScreen(a, b))

    def action_toggle_all_runs(self) -> None:
        self.all_runs = not self.all_runs
        self.poll()

    @on(DataTable.RowSelected, "#evaluations-table")
    def evaluation_chosen(self) -> None:
        self.action_tasks()

    @on(DataTable.RowSelected, "#checkpoints-table")
    def checkpoint_chosen(self) -> None:
        self.notify("e: evaluate   r: resume from here   d: delete   tab: evaluations")

