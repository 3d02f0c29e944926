"""Training configuration: defaults, parsing from strings, validation.

Imports no torch, so `sage-engine check` answers quickly. A bad value raises
ConfigError naming the field and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field

from engine.errors import UserError

STUDENTS = ("standalone", "sage-seed", "recursive", "pertask")
PRESETS = ("tiny", "small", "base", "seed")
LOSSES = ("ce", "weighted", "focal")
LOSS_REGIONS = ("grid", "canvas")


class ConfigError(UserError, ValueError):
    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass
class TrainConfig:
    # data: tasks are split by task, never by example
    dataset: str = "arc1/train"
    task_ids: list[str] = field(default_factory=list)
    max_tasks: int | None = 10
    max_grid: int | None = 10          # keep tasks whose grids all fit (CPU demo)
    val_tasks: int = 0                 # tasks held out of training for validation
    eval_dataset: str | None = None    # also validate on e.g. arc1/eval test inputs
    eval_max_tasks: int | None = 20
    # Transductive training: also train on the evaluation dataset's demonstration pairs
    # (never their test outputs), as TRM and HRM do; every evaluation from it says so.
    eval_demos: bool = False
    max_demos: int = 3
    features: str | None = None        # feature store (folder or name under features/)
    # model
    student: str = "standalone"
    preset: str = "tiny"
    # optimisation
    epochs: int = 500
    max_steps: int | None = None
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 4e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    # loss
    loss: str = "ce"
    loss_region: str = "grid"          # grid: real cells + the edge marking the shape; canvas: all 900
    focal_gamma: float = 2.0
    w_task: float = 1.0
    w_mse: float = 0.5
    w_cosine: float = 0.25
    # augmentation: dihedral x colour permutations for training, votes for evaluation
    augment: bool = False
    tta_votes: int = 0
    # runtime
    device: str = "auto"               # auto | cpu | cuda | cuda:N
    gpu_memory_fraction: float | None = None  # cap this run's share of its GPU (shared GPUs)
    seed: int = 0
    val_every_steps: int = 100
    checkpoint_every_steps: int = 200
    checkpoint_every_minutes: float = 10.0
    keep_last: int = 3

    def validate(self) -> "TrainConfig":
        positive = ("epochs", "batch_size", "grad_accum", "max_demos", "val_every_steps",
                    "checkpoint_every_steps", "keep_last")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be at least 1, got {getattr(self, name)}")
        for name in ("max_tasks", "max_grid", "max_steps", "eval_max_tasks"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(name, f"must be at least 1 (or empty for no limit), got {value}")
        if self.max_grid is not None and self.max_grid > 30:
            raise ConfigError("max_grid", "ARC grids are at most 30x30")
        if not 0 < self.lr < 1:
            raise ConfigError("lr", f"learning rate must be between 0 and 1, got {self.lr}")
        for name in ("weight_decay", "min_lr_ratio", "grad_clip", "w_task", "w_mse", "w_cosine",
                     "focal_gamma", "warmup_steps", "val_tasks", "tta_votes",
                     "checkpoint_every_minutes"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must not be negative, got {getattr(self, name)}")
        if self.gpu_memory_fraction is not None and not 0 < self.gpu_memory_fraction <= 1:
            raise ConfigError("gpu_memory_fraction", f"must be in (0, 1], got {self.gpu_memory_fraction}")
        if self.student not in STUDENTS:
            raise ConfigError("student", f"{self.student!r} is not one of {', '.join(STUDENTS)}")
        if self.preset not in PRESETS:
            raise ConfigError("preset", f"{self.preset!r} is not one of {', '.join(PRESETS)}")
        if self.loss_region not in LOSS_REGIONS:
            raise ConfigError("loss_region", f"{self.loss_region!r} is not one of {', '.join(LOSS_REGIONS)}")
        if self.loss not in LOSSES:
            raise ConfigError("loss", f"{self.loss!r} is not one of {', '.join(LOSSES)}")
        if self.eval_demos and not self.eval_dataset:
            raise ConfigError("eval_demos", "training on the evaluation tasks' demonstrations "
                                            "needs eval_dataset (e.g. arc1/eval)")
        if self.eval_demos and self.features:
            raise ConfigError("eval_demos", "cannot be combined with a feature store: a store holds "
                                            "one dataset's examples")
        if self.student == "sage-seed" and not self.features:
            raise ConfigError("features", "the sage-seed student reads teacher features: "
                                          "pass a feature store (sage-engine extract makes one)")
        if not (self.device in ("auto", "cpu", "cuda") or
                (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ConfigError("device", f"{self.device!r}: use auto, cpu, cuda or cuda:N")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a dict whose values may be strings (CLI, form) or typed (JSON)."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for name, raw in values.items():
            if name not in known:
                raise ConfigError(name, f"unknown setting; known: {', '.join(sorted(known))}")
            kwargs[name] = _coerce(name, raw, typing.get_type_hints(cls)[name])
        return cls(**kwargs).validate()


def _coerce(name: str, raw: object, hint: object) -> object:
    """Turn ``raw`` into the field's type; strings are parsed the way a user types them."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "null")):
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    try:
        if origin is list:
            if isinstance(raw, str):
                return [part.strip() for part in raw.split(",") if part.strip()]
            if not isinstance(raw, list):
                raise TypeError
            return [str(item) for item in raw]
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(raw, str) and raw.strip().lower() in ("0", "false", "no", "off"):
                return False
            raise TypeError
        if hint is int:
            if isinstance(raw, bool):
                raise TypeError
            if isinstance(raw, float) and not raw.is_integer():
                raise TypeError
            return int(raw)
        if hint is float:
            if isinstance(raw, bool):
                raise TypeError
            return float(raw)
        if hint is str:
            if not isinstance(raw, str):
                raise TypeError
            return raw.strip()
    except (TypeError, ValueError):
        kind = getattr(hint, "__name__", str(hint))
        raise ConfigError(name, f"expected {kind}{' or empty' if optional else ''}, got {raw!r}") from None
    return raw


def parse_overrides(pairs: list[str]) -> dict:
    """``["lr=1e-3", "epochs=5"]`` → ``{"lr": "1e-3", "epochs": "5"}``."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(pair, "overrides are written key=value, e.g. --set lr=1e-3")
        result[key.strip()] = value
    return result


def load_config_file(path: str) -> dict:
    try:
        with open(path) as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a JSON object of settings")
    return data
