"""The new-run form: a training run, a feature extraction, or an evaluation with
test-time training (a fresh per-task student learns each task from its demonstrations;
no checkpoint needed). Each value is checked in the form as it is typed (numbers, ranges,
folders that must exist); on start, the engine checks the whole configuration
(``python -m engine check``) before anything launches."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static
from textual.worker import Worker, WorkerState

from db import settings
from sage_tui import control
from sage_tui.workers import ReportsWorkerErrors

KINDS = {"train": "train", "extract": "extract features",
         "eval": "evaluate with test-time training"}
FOLDER = "folder"  # the dataset choice that reveals the task-folder field
DATASET_LABELS = {**settings.DATASETS, FOLDER: "a folder of task JSON files"}
# The recipe that generalises across tasks (README, "Students trained across tasks").
RECIPE_FIELDS = ("loss_region", "augment", "augment_translate", "task_embedding", "eval_dataset", "eval_demos")
YES_NO = {"False": "no", "True": "yes"}
# The form's fields that are train settings (db/settings.py TRAIN): their defaults,
# choices, types and ranges all come from the schema.
TRAIN_FIELDS = ("dataset", "features", "student", "preset", "epochs", "batch_size", "lr", "w_task",
                "w_mse", "w_cosine", "max_tasks", "device", "seed", *RECIPE_FIELDS)
FORM_ONLY = {"kind": "train", "name": "", "dataset_folder": "", "teacher": settings.EXTRACT["teacher"].default,
             "teacher_folder": "", "gpus": str(settings.GPUS.default)}


def _text(value: object) -> str:
    return "" if value is None else str(value)


# The evaluation's own fields (db/settings.py EVAL): tasks and the test-time training budget.
EVAL_FIELDS = ("max_grid", "ttt_steps", "ttt_models", "workers")
DEFAULTS = {**FORM_ONLY, **{key: _text(settings.TRAIN[key].default) for key in TRAIN_FIELDS},
            **{key: _text(settings.EVAL[key].default) for key in EVAL_FIELDS}}
# Which form field shows an error the engine reports for a config field.
ENGINE_FIELDS = {"teacher_options": "teacher_folder", "model_path": "teacher_folder",
                 "store": "features", "store_path": "features"}
TRAIN_ONLY = ("student", "preset", "epochs", "lr", "w_task", "w_mse", "w_cosine", "seed", *RECIPE_FIELDS)
EXTRACT_ONLY = ("teacher", "teacher_folder")
EVAL_ONLY = EVAL_FIELDS
NOT_EVAL = ("features", "batch_size", "gpus")


@dataclass
class FormResult:
    kind: str
    name: str
    config: dict
    gpus: int
    errors: dict[str, str] = field(default_factory=dict)


def _parse(setting: settings.Setting, text: str, errors: dict):
    """The field's text as the setting's type; a message in ``errors`` when it is not allowed."""
    try:
        return setting.parse(text)
    except settings.SettingError as exc:
        errors[setting.name] = exc.message
        return None


def _folder_problem(text: str, what: str) -> str | None:
    folder = Path(text).expanduser()
    if not text:
        return what
    if not folder.is_dir():
        return f"no folder at {folder}"
    return None


def validate_form(values: dict[str, str], workspace: Path, base: dict | None = None) -> FormResult:
    """Turn the form's text into a run config, with a message per field that is wrong.
    Each value is checked by the settings schema (types, ranges, choices, finite numbers);
    folders that must exist are checked here; the engine checks the rest before launch."""
    errors: dict[str, str] = {}
    kind = values["kind"]
    schema = settings.schema_for(kind)
    name = values["name"].strip() or kind
    if len(name) > 60:
        errors["name"] = "at most 60 characters"

    dataset = values["dataset"]
    if dataset == FOLDER:
        text = values["dataset_folder"].strip()
        problem = _folder_problem(text, "the folder of task JSON files")
        if problem is None and not any(Path(text).expanduser().glob("*.json")):
            problem = f"{Path(text).expanduser()} holds no .json task files"
        if problem:
            errors["dataset_folder"] = problem
        dataset = str(Path(text).expanduser().resolve())

    max_tasks = _parse(schema["max_tasks"], values["max_tasks"], errors)
    device = _parse(schema["device"], values["device"], errors) or "auto"
    if kind == "eval":   # the per-task students train on the GPU where there is one (auto)
        config = {key: _parse(schema[key], values[key], errors) for key in EVAL_FIELDS}
        config.update(dataset=dataset, max_tasks=max_tasks, checkpoint_id=None, device=device)
        return _checked(kind, name, {**(base or {}), **config}, 1, errors, schema)
    gpus = _parse(settings.GPUS, values["gpus"], errors) or 1
    if gpus > 1 and device == "cpu":
        errors["gpus"] = "several GPUs need device auto or cuda"
    batch_size = _parse(schema["batch_size"], values["batch_size"], errors)
    features = values["features"].strip()

    if kind == "train":
        if features and ("/" in features or features.startswith("~")):
            if not Path(features).expanduser().is_dir():
                errors["features"] = f"no feature store folder at {features}"
        elif features and not (workspace / "features" / features).is_dir():
            errors["features"] = f"no feature store named {features!r} in {workspace / 'features'}"
        config = {key: _parse(schema[key], values[key], errors)
                  for key in TRAIN_FIELDS if key not in ("dataset", "features", "device")}
        config.update(dataset=dataset, features=features or None, device=device,
                      batch_size=batch_size, max_tasks=max_tasks)
    else:
        teacher = values["teacher"]
        options = dict((base or {}).get("teacher_options") or {})
        if teacher == "builtin":
            options.pop("model_path", None)
        else:
            text = values["teacher_folder"].strip()
            folder = Path(text).expanduser()
            problem = _folder_problem(text, f"the {settings.TEACHERS[teacher]} with the model's weights")
            if problem is None and teacher == "hf" and not (folder / "config.json").exists():
                problem = f"not a Hugging Face model folder: no config.json in {folder}"
            if problem:
                errors["teacher_folder"] = problem
            options["model_path"] = str(folder.resolve())
        if device != "auto":
            options["device"] = device
        else:
            options.pop("device", None)
        config = {"dataset": dataset, "teacher": teacher, "teacher_options": options,
                  "store": features or None, "batch_size": batch_size, "max_tasks": max_tasks,
                  "device": device}
    return _checked(kind, name, {**(base or {}), **config}, gpus, errors, schema)


def _checked(kind: str, name: str, merged: dict, gpus: int, errors: dict,
             schema: settings.Schema) -> FormResult:
    if not errors:
        # The rules between settings (a sage-seed student needs features, ...).
        try:
            schema.parse({k: v for k, v in merged.items() if k in schema.names or k in schema.passthrough})
        except settings.SettingError as exc:
            errors[ENGINE_FIELDS.get(exc.field, exc.field)] = exc.message
    return FormResult(kind, name, merged, gpus, errors)


def form_values(kind: str, config: dict | None, name: str) -> dict[str, str]:
    """The form's text for a run's config (clone) or the defaults."""
    values = dict(DEFAULTS, kind=kind, name=name)
    if not config:
        return values
    dataset = str(config.get("dataset", DEFAULTS["dataset"]))
    if dataset in settings.DATASETS:
        values["dataset"] = dataset
    else:
        values["dataset"], values["dataset_folder"] = FOLDER, dataset
    for key in (*TRAIN_FIELDS, *EVAL_FIELDS, "teacher"):
        if key in config and key not in ("dataset", "features"):
            values[key] = _text(config[key])
    values["features"] = str(config.get("features") or config.get("store") or "")
    values["teacher_folder"] = str((config.get("teacher_options") or {}).get("model_path", ""))
    return values


class NewRunScreen(ReportsWorkerErrors, Screen):
    BINDINGS = [
        Binding("ctrl+s", "start", "Start run", id="new_run.start"),
        Binding("escape", "cancel", "Cancel", id="new_run.cancel"),
    ]

    class Checked(Message):
        """The engine's verdict, or the launched run."""
        def __init__(self, field_name: str | None, message: str, run_id: int | None,
                     warning: str = "") -> None:
            super().__init__()
            self.field_name = field_name
            self.message = message
            self.run_id = run_id
            self.warning = warning

    def __init__(self, kind: str = "train", prefill: dict | None = None, name: str = "") -> None:
        super().__init__()
        self.base = dict(prefill or {})
        self.initial = form_values(kind, prefill, name)
        self.kind = kind
        self.touched: set[str] = set()
        self.submitted = False
        self.busy = False
        self.warned_for: dict | None = None   # the settings whose check warning was shown

    # ---------------------------------------------------------------- layout
    def row(self, key: str, label: str, widget) -> ComposeResult:
        classes = "form-row"
        if key in TRAIN_ONLY:
            classes += " train-only"
        if key in EXTRACT_ONLY:
            classes += " extract-only"
        if key in EVAL_ONLY:
            classes += " eval-only"
        if key in NOT_EVAL:
            classes += " not-eval"
        with Horizontal(classes=classes, id=f"row-{key}"):
            yield Label(label, classes="form-label")
            yield widget
        yield Static("", id=f"error-{key}", classes="field-error")

    def text(self, key: str, placeholder: str = "") -> Input:
        return Input(self.initial[key], placeholder=placeholder, id=key, compact=True)

    def choice(self, key: str, options) -> Select:
        pairs = [(label, value) for value, label in options.items()] if isinstance(options, dict) \
            else [(value, value) for value in options]
        return Select(pairs, value=self.initial[key], allow_blank=False, id=key, compact=True)

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="form"):
            yield Static("[b]New run[/b] — ctrl+s starts it, esc cancels", id="form-title")
            yield from self.row("kind", "kind", self.choice("kind", KINDS))
            yield from self.row("name", "name", self.text("name", "default: the kind"))
            yield from self.row("dataset", "dataset", self.choice("dataset", DATASET_LABELS))
            yield from self.row("dataset_folder", "task folder", self.text("dataset_folder", "/path/to/tasks"))
            yield from self.row("teacher", "teacher", self.choice("teacher", settings.TEACHERS))
            yield from self.row("teacher_folder", "teacher folder", self.text("teacher_folder", "/path/to/model"))
            yield from self.row("features", "feature store", self.text("features", "name or folder (optional)"))
            yield from self.row("student", "student", self.choice("student", settings.TRAIN["student"].choices))
            yield from self.row("preset", "preset", self.choice("preset", settings.TRAIN["preset"].choices))
            yield from self.row("epochs", "epochs", self.text("epochs"))
            yield from self.row("batch_size", "batch size", self.text("batch_size"))
            yield from self.row("lr", "learning rate", self.text("lr"))
            yield from self.row("w_task", "w task (CE)", self.text("w_task"))
            yield from self.row("w_mse", "w feature MSE", self.text("w_mse"))
            yield from self.row("w_cosine", "w feature cos", self.text("w_cosine"))
            yield from self.row("max_tasks", "max tasks", self.text("max_tasks", "empty: all"))
            yield from self.row("device", "device", self.text("device", "auto, cpu, cuda:N"))
            yield from self.row("gpus", "GPUs", self.text("gpus", "more than 1 uses torchrun"))
            yield from self.row("seed", "seed", self.text("seed"))
            yield from self.row("loss_region", "task loss over", self.choice("loss_region", settings.TRAIN["loss_region"].choices))
            yield from self.row("augment", "augment", self.choice("augment", YES_NO))
            yield from self.row("augment_translate", "translate by", self.text("augment_translate", "cells, 0: off"))
            yield from self.row("task_embedding", "task embedding", self.text("task_embedding", "width, 0: off"))
            yield from self.row("eval_dataset", "validate also on", self.text("eval_dataset", "e.g. arc1/eval; empty: none"))
            yield from self.row("eval_demos", "eval demos", self.choice("eval_demos", YES_NO))
            yield from self.row("max_grid", "max grid", self.text("max_grid", "only tasks that fit N×N, e.g. 10"))
            yield from self.row("ttt_steps", "TTT steps", self.text("ttt_steps", f"per task; empty: {settings.TTT_DEFAULT_STEPS}"))
            yield from self.row("ttt_models", "students", self.text("ttt_models", f"per task, votes pooled; empty: {settings.TTT_DEFAULT_MODELS}"))
            yield from self.row("workers", "workers", self.text("workers", "tasks in parallel; empty: every core"))
            yield Static("", id="form-message")
            yield Button("Start run (ctrl+s)", id="start", variant="primary", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.show_for_kind()
        self.query_one("#kind").focus()

    # ------------------------------------------------------------ validation
    def values(self) -> dict[str, str]:
        result = {}
        for key in DEFAULTS:
            widget = self.query_one(f"#{key}")
            result[key] = str(widget.value) if widget.value is not Select.NULL else ""
        return result

    def show_for_kind(self) -> None:
        values = self.values()
        kind = values["kind"]
        for row in self.query(".train-only"):
            row.display = kind == "train"
        for row in self.query(".extract-only"):
            row.display = kind == "extract"
        for row in self.query(".eval-only"):
            row.display = kind == "eval"
        for row in self.query(".not-eval"):
            row.display = kind != "eval"
        self.query_one("#row-dataset_folder").display = values["dataset"] == FOLDER
        self.query_one("#row-teacher_folder").display = kind == "extract" and values["teacher"] != "builtin"
        self.query_one("#row-features", Horizontal).query_one(Label).update(
            "store name" if kind == "extract" else "feature store")
        self.show_errors()

    def show_errors(self, extra: dict[str, str] | None = None) -> FormResult:
        result = validate_form(self.values(), self.app.workspace, self.base)
        errors = {**result.errors, **(extra or {})}
        for key in DEFAULTS:
            message = errors.get(key, "") if (self.submitted or key in self.touched) else ""
            visible = self.query_one(f"#row-{key}").display
            error = self.query_one(f"#error-{key}", Static)
            error.update(f"↳ {message}" if message and visible else "")
            error.display = bool(message and visible)
        return result

    @on(Input.Changed)
    def input_changed(self, event: Input.Changed) -> None:
        if event.input.id in DEFAULTS and event.value != self.initial.get(event.input.id):
            self.touched.add(event.input.id)
        self.show_errors()

    @on(Select.Changed)
    def select_changed(self, event: Select.Changed) -> None:
        self.touched.add(event.select.id)
        if event.select.id == "kind" and event.value != self.kind:
            # A dataset left at the previous kind's default moves to the new kind's own
            # (an evaluation's is arc1/eval); a chosen one stays.
            dataset = self.query_one("#dataset", Select)
            if dataset.value == settings.schema_for(self.kind)["dataset"].default:
                dataset.value = settings.schema_for(str(event.value))["dataset"].default
            self.kind = str(event.value)
        self.show_for_kind()

    # --------------------------------------------------------------- actions
    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        if self.busy:
            return
        self.submitted = True
        result = self.show_errors()
        visible_errors = {k: v for k, v in result.errors.items() if self.query_one(f"#row-{k}").display}
        if visible_errors:
            self.show_first_error(visible_errors)
            return
        self.busy = True
        self.set_message("checking the settings with the engine…")
        self.check_and_start(result)

    def show_first_error(self, errors: dict[str, str]) -> None:
        """At 80x24 the summary under the form is out of sight: focus the first bad field,
        scroll it and its message into view, and say how many there are in a toast."""
        first = next(key for key in DEFAULTS if key in errors)
        count = f"{len(errors)} marked field{'s' if len(errors) != 1 else ''}"
        self.set_message(f"[red]fix the {count}[/red]")
        self.notify(f"fix the {count}: {first} first ({errors[first]})", severity="error")
        self.query_one(f"#{first}").focus(scroll_visible=False)
        self.query_one("#form", VerticalScroll).scroll_to_center(self.query_one(f"#row-{first}"),
                                                                 animate=False)

    def action_cancel(self) -> None:
        self.app.pop_screen()

    def set_message(self, text: str) -> None:
        self.query_one("#form-message", Static).update(text)

    @work(thread=True, exclusive=True, group="new-run", exit_on_error=False,
          description="check settings and launch the run")
    def check_and_start(self, form: FormResult) -> None:
        verdict = control.check_config(form.kind, form.config, self.app.workspace)
        if not verdict.validated:
            # The check itself failed (crash, timeout): an unchecked run is never launched.
            self.post_message(self.Checked(None, f"not started: {verdict.message}", None))
            return
        if not verdict.ok:
            self.post_message(self.Checked(verdict.field, verdict.message, None))
            return
        if verdict.warnings and self.warned_for != form.config:
            # Shown before launch; the same settings started again launch anyway.
            self.warned_for = form.config
            self.post_message(self.Checked(None, "", None, warning=" ".join(verdict.warnings)))
            return
        run = control.start_run(self.app.workspace, form.kind, form.name, form.config, gpus=form.gpus)
        self.post_message(self.Checked(None, "", run.id))

    @on(Checked)
    def checked(self, message: Checked) -> None:
        self.busy = False
        if message.run_id is None and message.warning:
            self.set_message(f"[yellow]⚠ {message.warning}[/yellow] — ctrl+s again starts it anyway")
            self.notify(message.warning, title="evaluation tasks overlap the training tasks",
                        severity="warning", timeout=15)
            return
        if message.run_id is None:
            key = ENGINE_FIELDS.get(message.field_name, message.field_name)
            if key in DEFAULTS and self.query_one(f"#row-{key}").display:
                self.show_errors({key: message.message})
                self.query_one(f"#{key}").focus()
                self.set_message(f"[red]the engine refused {key}: {message.message}[/red]")
            elif message.field_name:
                self.set_message(f"[red]{message.field_name}: {message.message}[/red]")
            else:
                self.set_message(f"[red]{message.message}[/red]")
            return
        self.notify(f"run {message.run_id} started")
        self.app.pop_screen()
        self.app.poll()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        super().on_worker_state_changed(event)
        # The app has reported a failed check or launch; the form is usable again.
        if event.worker.group == "new-run" and event.state == WorkerState.ERROR:
            self.busy = False
            self.set_message("[red]the launch failed (see the notification)[/red]")
