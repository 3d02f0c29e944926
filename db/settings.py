"""The settings of every run kind (train, extract, eval): one schema, read by everyone.

The command line (`sage-engine train --set`, `check`), the engine's typed config
(engine/config.py's TrainConfig is built from TRAIN), the dashboard's new-run form and
its evaluate dialog all read these specs, so a default, a choice or a range is written
once. Imports neither torch nor textual.

A setting is one line: ``Setting(name, type, default, help, ...)``. Values may come
typed (JSON) or as text (the command line, the form); ``parse`` turns them into the
setting's type and checks choices and ranges. Non-finite numbers (nan, inf) are refused
everywhere.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Callable

DATASETS = {"arc1/train": "ARC-AGI-1 training", "arc1/eval": "ARC-AGI-1 evaluation",
            "arc2/train": "ARC-AGI-2 training", "arc2/eval": "ARC-AGI-2 evaluation"}
STUDENTS = ("standalone", "sage-seed", "recursive", "pertask")
PRESETS = ("tiny", "small", "base", "seed")
LOSSES = ("ce", "weighted", "focal")
LOSS_REGIONS = ("grid", "canvas")
TEACHERS = {"builtin": "built-in (no download)", "hf": "Hugging Face folder",
            "gr00t": "GR00T N1.5 folder"}
DTYPES = ("float16", "bfloat16")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
DEVICE_HELP = "auto, cpu, cuda or cuda:N"
EMPTY = ("", "none", "null")


class SettingError(ValueError):
    """A bad value: ``field`` names the setting, ``message`` says what is allowed."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Setting:
    name: str
    type: type                       # int, float, str, bool, list or dict
    default: object
    help: str
    choices: tuple | None = None
    low: float | None = None         # inclusive, unless low_open
    high: float | None = None        # inclusive, unless high_open
    low_open: bool = False
    high_open: bool = False
    optional: bool = False           # None (empty) allowed: "no limit" / "not set"
    check: Callable[[object], str | None] | None = None  # extra rule: a message or None

    def parse(self, raw: object) -> object:
        """``raw`` (typed or text) as this setting's type; SettingError if it is not allowed."""
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in EMPTY
                           and (self.optional or self.type not in (str, list))):
            if self.optional:
                return None
            raise SettingError(self.name, f"a value is needed ({self.help})")
        value = self._coerce(raw)
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingError(self.name, f"must be a finite number, got {raw!r}")
        if self.choices is not None and value not in self.choices:
            raise SettingError(self.name, f"{value!r} is not one of {', '.join(map(str, self.choices))}")
        self._check_range(value)
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise SettingError(self.name, problem)
        return value

    def _coerce(self, raw: object) -> object:
        kind = self.type.__name__
        wrong = SettingError(self.name, f"expected {kind}{' or empty' if self.optional else ''}, got {raw!r}")
        text = raw.strip() if isinstance(raw, str) else None
        if self.type is bool:
            if isinstance(raw, bool):
                return raw
            if text is not None and text.lower() in ("1", "true", "yes", "on"):
                return True
            if text is not None and text.lower() in ("0", "false", "no", "off"):
                return False
            raise wrong
        if self.type in (int, float):
            if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
                raise wrong
            try:
                number = float(raw) if self.type is float else (
                    int(text) if text is not None else raw)
            except ValueError:
                raise wrong from None
            if self.type is int and isinstance(number, float):
                if not number.is_integer():
                    raise wrong
                number = int(number)
            return number
        if self.type is str:
            if text is None:
                raise wrong
            return text if text or not self.optional else None
        if self.type is list:
            if text is not None:
                return [part.strip() for part in text.split(",") if part.strip()]
            if not isinstance(raw, list):
                raise wrong
            return [str(item) for item in raw]
        if self.type is dict:
            if not isinstance(raw, dict):
                raise wrong
            return dict(raw)
        raise wrong

    def _check_range(self, value: object) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return
        too_low = self.low is not None and (value < self.low or (self.low_open and value == self.low))
        too_high = self.high is not None and (value > self.high or (self.high_open and value == self.high))
        if too_low or too_high:
            raise SettingError(self.name, f"must be {self.range_text()}, got {value:g}")

    def range_text(self) -> str:
        low = f"{'above' if self.low_open else 'at least'} {self.low:g}" if self.low is not None else ""
        high = f"{'below' if self.high_open else 'at most'} {self.high:g}" if self.high is not None else ""
        text = " and ".join(part for part in (low, high) if part)
        return text + (" (or empty)" if self.optional else "")


@dataclass(frozen=True)
class Schema:
    kind: str
    settings: tuple[Setting, ...]
    rules: tuple[Callable[[dict], SettingError | None], ...] = field(default_factory=tuple)
    passthrough: tuple[str, ...] = ()   # keys kept as they are (filled by the engine)

    def __getitem__(self, name: str) -> Setting:
        for setting in self.settings:
            if setting.name == name:
                return setting
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.settings)

    def defaults(self) -> dict:
        return {s.name: copy.deepcopy(s.default) for s in self.settings}

    def parse(self, values: dict) -> dict:
        """All settings, typed and checked, defaults filled in; SettingError on the first
        bad one (an unknown name included)."""
        if not isinstance(values, dict):
            raise SettingError("config", "settings must be a JSON object of name: value")
        known = set(self.names) | set(self.passthrough)
        for name in values:
            if name not in known:
                raise SettingError(name, f"unknown setting; known: {', '.join(sorted(self.names))}")
        result = self.defaults()
        for name, raw in values.items():
            result[name] = self[name].parse(raw) if name in self.names else raw
        for rule in self.rules:
            problem = rule(result)
            if problem is not None:
                raise problem
        return result


def _device(value: object) -> str | None:
    return None if DEVICE_PATTERN.match(str(value)) else f"{value!r}: use {DEVICE_HELP}"


def _dataset(value: object) -> str | None:
    text = str(value)
    if text in DATASETS or "/" in text or text.startswith((".", "~")):
        return None
    return f"unknown dataset {text!r}: use one of {', '.join(DATASETS)} or a folder path"


def _shard(value: object) -> str | None:
    index, sep, count = str(value).partition("/")
    if sep and index.isdigit() and count.isdigit() and int(index) < int(count):
        return None
    return f"{value!r}: write the shard as i/n, e.g. 0/4"


def _seed_needs_features(values: dict) -> SettingError | None:
    if values["student"] == "sage-seed" and not values["features"]:
        return SettingError("features", "the sage-seed student reads teacher features: "
                                        "pass a feature store (sage-engine extract makes one)")
    return None


def _eval_demos_need_an_eval_dataset(values: dict) -> SettingError | None:
    if values["eval_demos"] and not values["eval_dataset"]:
        return SettingError("eval_demos", "training on the evaluation tasks' demonstrations needs "
                                          "eval_dataset (e.g. arc1/eval)")
    if values["eval_demos"] and values["features"]:
        return SettingError("eval_demos", "cannot be combined with a feature store: a store holds "
                                          "one dataset's examples")
    return None


def _grid_student_options(values: dict) -> SettingError | None:
    if values["task_embedding"] and values["student"] not in ("standalone", "recursive"):
        return SettingError("task_embedding", f"the {values['student']} student has no task embedding: "
                                              f"use student=standalone or recursive, or task_embedding=0")
    if values["augment_translate"] and values["student"] == "pertask":
        return SettingError("augment_translate", "the pertask student's training does not translate "
                                                 "grids: use augment_translate=0")
    return None


def _teacher_needs_folder(values: dict) -> SettingError | None:
    if values["teacher"] != "builtin" and not (values["teacher_options"] or {}).get("model_path"):
        return SettingError("teacher_options", f"the {values['teacher']} teacher needs its "
                                               f"model folder: --teacher-option model_path=/path/to/model")
    return None


def _positive_int(name: str, default: int | None, help: str, optional: bool = False) -> Setting:
    return Setting(name, int, default, help, low=1, optional=optional)


def _weight(name: str, default: float, help: str) -> Setting:
    return Setting(name, float, default, help, low=0)


TRAIN = Schema("train", (
    # data: tasks are split by task, never by example
    Setting("dataset", str, "arc1/train", "tasks to train on: arc1/train, arc1/eval, arc2/train, "
            "arc2/eval or a folder", check=_dataset),
    Setting("task_ids", list, [], "only these task ids (comma-separated; empty: all)"),
    _positive_int("max_tasks", 10, "the first N tasks", optional=True),
    Setting("max_grid", int, 10, "only tasks whose grids all fit N×N", low=1, high=30, optional=True),
    Setting("val_tasks", int, 0, "tasks held out for validation (split by task, never by example)", low=0),
    Setting("eval_dataset", str, None, "also validate on this dataset's test inputs, e.g. arc1/eval",
            optional=True, check=_dataset),
    _positive_int("eval_max_tasks", 20, "at most this many of its tasks", optional=True),
    Setting("eval_demos", bool, False, "transductive: also train on eval_dataset's demonstration "
            "pairs (never their test outputs); every evaluation from this run says so"),
    _positive_int("max_demos", 3, "demonstration pairs the student sees"),
    Setting("features", str, None, "feature store (name under features/ or a folder); needed by "
            "sage-seed, enables distillation", optional=True),
    # model
    Setting("student", str, "standalone", "standalone (reads the grids; teacher only through "
            "distillation), sage-seed (reads teacher features), recursive (refines its answer, "
            "after TRM) or pertask (the per-task network, pretrained across tasks)", choices=STUDENTS),
    Setting("preset", str, "tiny", "student size (seed: the original's 512-wide, 6 layers)", choices=PRESETS),
    Setting("task_embedding", int, 0, "width of a learned vector per training task added to the "
            "student's input (standalone, recursive; unseen tasks get the mean; 0: none)", low=0),
    # optimisation
    _positive_int("epochs", 500, "passes over the training queries"),
    _positive_int("max_steps", None, "stop after this many steps", optional=True),
    _positive_int("batch_size", 16, "queries per step"),
    _positive_int("grad_accum", 1, "micro-batches per optimizer step"),
    Setting("lr", float, 4e-3, "peak learning rate (AdamW, linear warmup then cosine)", low=0, high=1,
            low_open=True, high_open=True),
    _weight("weight_decay", 0.01, "AdamW weight decay"),
    Setting("warmup_steps", int, 20, "linear warmup steps", low=0),
    _weight("min_lr_ratio", 0.01, "final learning rate as a share of the peak"),
    _weight("grad_clip", 1.0, "gradient norm clip (0: none)"),
    # loss
    Setting("loss", str, "ce", "task loss: ce, weighted (inverse class frequency) or focal", choices=LOSSES),
    Setting("loss_region", str, "grid", "grid: the expected grid's cells and the edge marking its shape, "
            "each averaged; canvas: all 900 cells", choices=LOSS_REGIONS),
    _weight("focal_gamma", 2.0, "focal loss gamma"),
    _weight("w_task", 1.0, "weight of the task loss"),
    _weight("w_mse", 0.5, "distillation: weight of the MSE to the teacher's features"),
    _weight("w_cosine", 0.25, "distillation: weight of the cosine loss to the teacher's features"),
    # augmentation: dihedral x colour permutations for training, votes for evaluation
    Setting("augment", bool, False, "dihedral × colour-permutation augmentation of training queries"),
    Setting("augment_translate", int, 0, "shift every grid of a training query's task by one random "
            "offset of up to N cells down and right, padding with 0, within 30×30 (0: none)", low=0, high=29),
    Setting("tta_votes", int, 0, "augmentations voted over at validation and evaluation", low=0),
    # runtime
    Setting("device", str, "auto", DEVICE_HELP + " (bf16 autocast on CUDA)", check=_device),
    Setting("gpu_memory_fraction", float, None, "cap this run's share of its GPU's memory (a shared GPU)",
            low=0, high=1, low_open=True, optional=True),
    Setting("seed", int, 0, "random seed: CPU runs are deterministic for a seed", low=0),
    _positive_int("val_every_steps", 100, "validate every N steps"),
    _positive_int("checkpoint_every_steps", 200, "checkpoint every N steps"),
    _weight("checkpoint_every_minutes", 10.0, "and at least every N minutes"),
    _positive_int("keep_last", 3, "checkpoints kept besides the best"),
), rules=(_seed_needs_features, _eval_demos_need_an_eval_dataset, _grid_student_options))

EXTRACT = Schema("extract", (
    Setting("dataset", str, "arc1/train", "arc1/train, arc1/eval, arc2/train, arc2/eval or a folder",
            check=_dataset),
    Setting("teacher", str, "builtin", "the teacher model", choices=tuple(TEACHERS)),
    Setting("teacher_options", dict, {}, "teacher options (model_path, device, ...)"),
    Setting("store", str, None, "feature store name under features/", optional=True),
    Setting("store_path", str, None, "or an explicit feature store folder", optional=True),
    _positive_int("batch_size", 16, "examples per teacher batch"),
    Setting("shard", str, None, "this process's shard, i/n", optional=True, check=_shard),
    Setting("dtype", str, "float16", "stored feature type", choices=DTYPES),
    _positive_int("pool", 1, "mean-pool every this many tokens"),
    Setting("view", dict, {}, "how grids are drawn for the teacher (max_demos, cell_px, grid_lines)"),
    _positive_int("max_tasks", None, "at most this many tasks", optional=True),
    Setting("task_ids", list, None, "only these task ids (comma-separated)", optional=True),
    Setting("kinds", list, ["train", "test"], "which queries: train and/or test",
            check=lambda v: None if v and set(v) <= {"train", "test"} else "train and/or test"),
    Setting("device", str, "auto", DEVICE_HELP, check=_device),
), rules=(_teacher_needs_folder,))

# Test-time training without a checkpoint, by default: this many fresh per-task students
# per task, sharing this many steps, their votes pooled (README, "Learning benchmarks").
# 1,350 steps (450 each) in bf16 where the CPU has it scored 0.428 on the development set
# dev-small against 0.404 for 900 in fp32, in about 1.1x the time.
TTT_DEFAULT_STEPS = 1350
TTT_DEFAULT_MODELS = 3
TTT_PRECISIONS = ("auto", "fp32", "bf16")

# An evaluation: a checkpoint as it is, or test-time training on each task (without a
# checkpoint: a fresh per-task student per task). A new setting is one more line here.
EVAL = Schema("eval", (
    _positive_int("checkpoint_id", None, "the checkpoint evaluated (empty: a fresh per-task "
                  "student learns each task)", optional=True),
    _positive_int("source_run_id", None, "the training run it belongs to", optional=True),
    Setting("dataset", str, "arc1/eval", "arc1/eval, arc1/train, arc2/eval, arc2/train or a folder",
            check=_dataset),
    Setting("task_ids", list, None, "only these task ids (comma-separated; empty: all)", optional=True),
    _positive_int("max_tasks", None, "at most this many tasks", optional=True),
    Setting("max_grid", int, None, "only tasks whose grids all fit N×N", low=1, high=30, optional=True),
    Setting("tta_votes", int, None, "augmentations voted over (test-time training: colour "
            "permutations per dihedral view, default 4)", low=0, optional=True),
    _positive_int("ttt_steps", None, "test-time training steps per task, shared by its "
                  f"models (default without a checkpoint: {TTT_DEFAULT_STEPS})", optional=True),
    Setting("ttt_seconds", float, None, "test-time training budget per task, seconds", low=0,
            low_open=True, optional=True),
    _positive_int("ttt_models", None, "per-task students in an ensemble sharing the budget "
                  f"(default {TTT_DEFAULT_MODELS})", optional=True),
    Setting("ttt_colour_head", int, 0, "hidden width of the fresh per-task student's colour-equivariant "
            "head (0: none)", low=0, high=256),
    Setting("ttt_changed_weight", float, 1.0, "per-task student: loss weight of the output cells whose "
            "colour differs from the input cell's (1: every cell alike)", low=1.0),
    Setting("ttt_precision", str, "auto", "per-task student: training arithmetic, fp32, bf16 (faster on a "
            "CPU with native bf16: AVX512-BF16 or AMX) or auto (bf16 on such a CPU, else fp32)",
            choices=TTT_PRECISIONS),
    Setting("ttt_rule", bool, True, "fresh or pretrained per-task students: the rule student (a shallow "
            "decision tree over the cell features) answers first where it explains every demonstration"),
    Setting("ttt_dihedral", bool, True, "test-time training under the 8 dihedral transforms"),
    Setting("ttt_colours", bool, True, "test-time training under colour permutations"),
    _positive_int("workers", None, "tasks trained in parallel processes (default: every core)",
                  optional=True),
    Setting("seed", int, 0, "random seed", low=0),
    Setting("device", str, "auto", DEVICE_HELP, check=_device),
))

SCHEMAS = {"train": TRAIN, "extract": EXTRACT, "eval": EVAL}
# Not a setting of the run but of its launch: one process per GPU under torchrun.
GPUS = Setting("gpus", int, 1, "GPUs (more than 1 runs under torchrun)", low=1)


def schema_for(kind: str) -> Schema:
    try:
        return SCHEMAS[kind]
    except KeyError:
        raise SettingError("kind", f"{kind!r} is not one of {', '.join(SCHEMAS)}") from None


def _default_text(setting: Setting) -> str:
    default = setting.default
    if default is None or default == [] or default == {}:
        return "–"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, list):
        return f"`{','.join(default)}`"
    return f"`{default:g}`" if isinstance(default, float) else f"`{default}`"


def _allowed_text(setting: Setting) -> str:
    if setting.choices is not None:
        return ", ".join(f"`{choice}`" for choice in setting.choices)
    if setting.low is not None or setting.high is not None:
        return f"{setting.type.__name__}, {setting.range_text()}"
    return setting.type.__name__ + (", or empty" if setting.optional else "")


def markdown_table(schema: Schema) -> str:
    """The schema as the README's table (README.md holds this text; a test keeps it so)."""
    lines = ["| setting | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{s.name}` | {_default_text(s)} | {_allowed_text(s)} | {s.help} |" for s in schema.settings]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m db.settings train: print the README's table
    import sys

    print(markdown_table(schema_for(sys.argv[1] if len(sys.argv) > 1 else "train")))
