"""Run configuration: the settings schema (db/settings.py) as the engine sees it.

Imports no torch, so `sage-engine check` answers quickly. A bad value raises
ConfigError naming the field and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import json

from db.settings import TRAIN, SettingError, schema_for
from engine.errors import UserError

class ConfigError(UserError, ValueError):
    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def parse_settings(kind: str, values: dict) -> dict:
    """``values`` checked against the kind's schema (db/settings.py), typed, defaults filled."""
    try:
        return schema_for(kind).parse(values)
    except SettingError as exc:
        raise ConfigError(exc.field, exc.message) from None


class _TrainConfigMethods:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self):
        """Check the current values against the schema (after a field was changed)."""
        parse_settings("train", self.to_dict())
        return self

    @classmethod
    def from_dict(cls, values: dict):
        """Build from a dict whose values may be strings (CLI, form) or typed (JSON)."""
        return cls(**parse_settings("train", values))


# The engine's typed view of the train schema: one field per setting, same defaults.
TrainConfig = dataclasses.make_dataclass(
    "TrainConfig",
    [(s.name, s.type if not s.optional else s.type | None,
      dataclasses.field(default_factory=lambda default=s.default: copy.deepcopy(default)))
     for s in TRAIN.settings],
    bases=(_TrainConfigMethods,))
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = "Training settings (db/settings.py TRAIN), as typed attributes."


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
