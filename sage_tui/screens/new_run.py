"""The new-run form: a training or feature-extraction run. Each value is checked in the
form as it is typed (numbers, ranges, folders that must exist); on start, the engine
checks the whole configuration (``python -m engine check``) before anything launches."""

from __future__ import annotations

import re
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

from sage_tui import control
from sage_tui.workers import ReportsWorkerErrors

KINDS = ("train", "extract")
DATASETS = ("arc1/train", "arc1/eval", "arc2/train", "arc2/eval", "folder")
DATASET_LABELS = {"arc1/train": "ARC-AGI-1 training", "arc1/eval": "ARC-AGI-1 evaluation",
                  "arc2/train": "ARC-AGI-2 training", "arc2/eval": "ARC-AGI-2 evaluation",
                  "folder": "a folder of task JSON files"}
TEACHERS = {"builtin": "built-in (no download)", "hf": "Hugging Face folder",
            "gr00t": "GR00T N1.5 folder"}
STUDENTS = ("standalone", "sage-seed")
PRESETS = ("tiny", "small", "base", "seed")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")

# The engine's defaults (engine/config.py TrainConfig): a quick CPU demo run.
DEFAULTS = {
    "kind": "train", "name": "", "dataset": "arc1/train", "dataset_folder": "",
    "teacher": "builtin", "teacher_folder": "", "features": "", "student": "standalone",
    "preset": "tiny", "epochs": "500", "batch_size": "16", "lr": "0.004", "w_task": "1.0",
    "w_mse": "0.5", "w_cosine": "0.25", "max_tasks": "10", "device": "auto", "gpus": "1",
    "seed": "0",
}
# Which form field shows an error the engine reports for a config field.
ENGINE_FIELDS = {"teacher_options": "teacher_folder", "model_path": "teacher_folder",
                 "store": "features", "store_path": "features"}
TRAIN_ONLY = ("student", "preset", "epochs", "lr", "w_task", "w_mse", "w_cosine", "seed")
EXTRACT_ONLY = ("teacher", "teacher_folder")


@dataclass
class FormResult:
    kind: str
    name: str
    config: dict
    gpus: int
    errors: dict[str, str] = field(default_factory=dict)


def _integer(values: dict, key: str, errors: dict, minimum: int = 1, optional: bool = False):
    text = values[key].strip()
    if optional and text.lower() in ("", "all", "none"):
        return None
    try:
        number = int(text)
    except ValueError:
        errors[key] = "a whole number" + (", or empty for all" if optional else "")
        return None
    if number < minimum:
        errors[key] = f"at least {minimum}"
    return number


def _decimal(values: dict, key: str, errors: dict, low: float = 0.0, high: float | None = None,
             open_low: bool = False):
    try:
        number = float(values[key].strip())
    except ValueError:
        errors[key] = "a number, e.g. 0.5 or 3e-3"
        return None
    if number < low or (open_low and number == low) or (high is not None and number >= high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        errors[key] = f"must be {bounds}" + (" (not 0)" if open_low else "")
    return number


def validate_form(values: dict[str, str], workspace: Path, base: dict | None = None) -> FormResult:
    """Turn the form's text into a run config, with a message per field that is wrong.
    Checks what can be checked at once, here: types, ranges, folders that must exist."""
    errors: dict[str, str] = {}
    kind = values["kind"]
    name = values["name"].strip() or kind
    if len(name) > 60:
        errors["name"] = "at most 60 characters"

    dataset = values["dataset"]
    if dataset == "folder":
        folder = Path(values["dataset_folder"].strip()).expanduser()
        if not values["dataset_folder"].strip():
            errors["dataset_folder"] = "the folder of task JSON files"
        elif not folder.is_dir():
            errors["dataset_folder"] = f"no folder at {folder}"
        elif not any(folder.glob("*.json")):
            errors["dataset_folder"] = f"{folder} holds no .json task files"
        dataset = str(folder.resolve())

    device = values["device"].strip()
    if not DEVICE_PATTERN.match(device):
        errors["device"] = "auto, cpu, cuda or cuda:N"
    gpus = _integer(values, "gpus", errors) or 1
    if gpus > 1 and device == "cpu":
        errors["gpus"] = "several GPUs need device auto or cuda"
    batch_size = _integer(values, "batch_size", errors)
    max_tasks = _integer(values, "max_tasks", errors, optional=True)
    features = values["features"].strip()

    if kind == "train":
        if features and ("/" in features or features.startswith("~")):
            if not Path(features).expanduser().is_dir():
                errors["features"] = f"no feature store folder at {features}"
        elif features and not (workspace / "features" / features).is_dir():
            errors["features"] = f"no feature store named {features!r} in {workspace / 'features'}"
        if values["student"] == "sage-seed" and not features:
            errors["features"] = "the sage-seed student reads teacher features: name a store"
        config = {
            "dataset": dataset, "features": features or None, "student": values["student"],
            "preset": values["preset"], "epochs": _integer(values, "epochs", errors),
            "batch_size": batch_size, "lr": _decimal(values, "lr", errors, 0.0, 1.0, open_low=True),
            "w_task": _decimal(values, "w_task", errors), "w_mse": _decimal(values, "w_mse", errors),
            "w_cosine": _decimal(values, "w_cosine", errors), "max_tasks": max_tasks,
            "device": device, "seed": _integer(values, "seed", errors, minimum=0),
        }
    else:
        teacher = values["teacher"]
        options = dict((base or {}).get("teacher_options") or {})
        if teacher == "builtin":
            options.pop("model_path", None)
        else:
            folder = Path(values["teacher_folder"].strip()).expanduser()
            if not values["teacher_folder"].strip():
                errors["teacher_folder"] = f"the {TEACHERS[teacher]} with the model's weights"
            elif not folder.is_dir():
                errors["teacher_folder"] = f"no folder at {folder}"
            elif teacher == "hf" and not (folder / "config.json").exists():
                errors["teacher_folder"] = f"not a Hugging Face model folder: no config.json in {folder}"
            options["model_path"] = str(folder.resolve())
        if device != "auto":
            options["device"] = device
        else:
            options.pop("device", None)
        config = {"dataset": dataset, "teacher": teacher, "teacher_options": options,
                  "store": features or None, "batch_size": batch_size, "max_tasks": max_tasks,
                  "device": device}
    merged = {**(base or {}), **config}
    return FormResult(kind, name, merged, gpus, errors)


def form_values(kind: str, config: dict | None, name: str) -> dict[str, str]:
    """The form's text for a run's config (clone) or the defaults."""
    values = dict(DEFAULTS, kind=kind, name=name)
    if not config:
        return values
    dataset = str(config.get("dataset", DEFAULTS["dataset"]))
    if dataset in DATASETS:
        values["dataset"] = dataset
    else:
        values["dataset"], values["dataset_folder"] = "folder", dataset
    for key in ("student", "preset", "epochs", "batch_size", "lr", "w_task", "w_mse",
                "w_cosine", "device", "seed", "teacher"):
        if config.get(key) is not None:
            values[key] = str(config[key])
    values["max_tasks"] = "" if config.get("max_tasks") is None else str(config["max_tasks"])
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
            yield from self.row("teacher", "teacher", self.choice("teacher", TEACHERS))
            yield from self.row("teacher_folder", "teacher folder", self.text("teacher_folder", "/path/to/model"))
            yield from self.row("features", "feature store", self.text("features", "name or folder (optional)"))
            yield from self.row("student", "student", self.choice("student", STUDENTS))
            yield from self.row("preset", "preset", self.choice("preset", PRESETS))
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
        self.query_one("#row-dataset_folder").display = values["dataset"] == "folder"
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
        verdict = control.check_config(form.kind, form.config)
        if not verdict.ok:
            self.post_message(self.Checked(verdict.field, verdict.message, None))
            return
        if verdict.warnings and self.warned_for != form.config:
            # Shown before launch; the same settings started again launch anyway.
            self.warned_for = form.config
            self.post_message(self.Checked(None, "", None, warning=" ".join(verdict.warnings)))
            return
        run = control.start_run(self.app.workspace, form.kind, form.name, form.config, gpus=form.gpus)
        self.post_message(self.Checked(None, "", run.id, warning="" if verdict.validated else verdict.message))

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
            else:
                self.set_message(f"[red]{message.field_name}: {message.message}[/red]")
            return
        if message.warning:
            self.notify(message.warning, title="launched without a check", severity="warning", timeout=10)
        self.notify(f"run {message.run_id} started")
        self.app.pop_screen()
        self.app.poll()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        super().on_worker_state_changed(event)
        # The app has reported a failed check or launch; the form is usable again.
        if event.worker.group == "new-run" and event.state == WorkerState.ERROR:
            self.busy = False
            self.set_message("[red]the launch failed (see the notification)[/red]")
