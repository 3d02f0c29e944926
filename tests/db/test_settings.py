"""The one settings schema (db/settings.py): types, ranges, choices, non-finite numbers,
rules between settings, and the README's table generated from it."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest

from db import settings
from db.settings import EVAL, EXTRACT, TRAIN, Schema, Setting, SettingError


@pytest.mark.parametrize("schema, name, raw, message", [
    (TRAIN, "grad_clip", "nan", "finite"), (TRAIN, "weight_decay", math.inf, "finite"),
    (TRAIN, "lr", "-inf", "finite"), (TRAIN, "lr", 0, "above 0"), (TRAIN, "lr", "1", "below 1"),
    (TRAIN, "epochs", "1.5", "expected int"), (TRAIN, "epochs", True, "expected int"),
    (TRAIN, "max_grid", 31, "at most 30"), (TRAIN, "student", "big", "not one of"),
    (TRAIN, "device", "gpu", "cuda:N"), (TRAIN, "dataset", "nonsense", "unknown dataset"),
    (EXTRACT, "batch_size", [8], "expected int"), (EXTRACT, "shard", "4/4", "i/n"),
    (EXTRACT, "kinds", "train,val", "train and/or test"), (EVAL, "max_tasks", "0", "at least 1"),
])
def test_bad_values_are_refused_with_the_setting_named(schema, name, raw, message):
    with pytest.raises(SettingError, match=message) as caught:
        schema.parse({name: raw})
    assert caught.value.field == name


def test_text_is_parsed_the_way_a_user_types_it():
    parsed = TRAIN.parse({"lr": "1e-3", "max_tasks": "", "augment": "yes", "task_ids": "a, b",
                          "epochs": 3.0, "eval_dataset": "none"})
    assert (parsed["lr"], parsed["max_tasks"], parsed["augment"], parsed["task_ids"],
            parsed["epochs"], parsed["eval_dataset"]) == (0.001, None, True, ["a", "b"], 3, None)
    assert EXTRACT.parse({"batch_size": "8"})["batch_size"] == 8


def test_unknown_settings_and_rules_between_settings():
    with pytest.raises(SettingError, match="unknown setting") as caught:
        TRAIN.parse({"colour": "red"})
    assert caught.value.field == "colour"
    with pytest.raises(SettingError, match="sage-seed") as caught:
        TRAIN.parse({"student": "sage-seed"})
    assert caught.value.field == "features"
    with pytest.raises(SettingError, match="model_path"):
        EXTRACT.parse({"teacher": "gr00t"})
    assert EXTRACT.parse({"teacher": "gr00t", "teacher_options": {"model_path": "/m"}})["teacher"] == "gr00t"


def test_task_embedding_and_translation_are_refused_where_the_student_cannot_use_them():
    for student, name in (("sage-seed", "task_embedding"), ("pertask", "task_embedding"),
                          ("pertask", "augment_translate")):
        with pytest.raises(SettingError, match=f"use {name}|{name}=0") as caught:
            TRAIN.parse({"student": student, name: 4, "features": "store"})
        assert caught.value.field == name
    parsed = TRAIN.parse({"student": "recursive", "task_embedding": "16", "augment_translate": "3"})
    assert (parsed["task_embedding"], parsed["augment_translate"]) == (16, 3)
    with pytest.raises(SettingError, match="at most 29"):
        TRAIN.parse({"augment_translate": 30})
    assert (TRAIN["task_embedding"].default, TRAIN["augment_translate"].default) == (0, 0)


def test_defaults_and_the_engines_typed_config_come_from_the_schema():
    from engine.config import TrainConfig

    assert TrainConfig().to_dict() == TRAIN.defaults()
    assert [f.name for f in dataclasses.fields(TrainConfig)] == list(TRAIN.names)
    # The existing names and defaults are kept.
    assert (TRAIN["lr"].default, TRAIN["epochs"].default, TRAIN["preset"].default,
            EVAL["dataset"].default) == (4e-3, 500, "tiny", "arc1/eval")


def test_a_new_eval_setting_is_one_line():
    extended = Schema("eval", EVAL.settings + (Setting("ttt_warmup", int, 0, "warm-up steps", low=0),))
    assert extended.parse({"ttt_warmup": "5"})["ttt_warmup"] == 5
    with pytest.raises(SettingError, match="at least 0"):
        extended.parse({"ttt_warmup": -1})


@pytest.mark.parametrize("schema", [TRAIN, EVAL], ids=["train", "eval"])
def test_the_readme_tables_are_the_schema(schema):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    kind = schema.kind
    block = re.search(rf"<!-- settings:{kind}[^>]*-->\n(.*?)\n<!-- /settings:{kind} -->", readme, re.S)
    assert block, f"README.md lost its generated {kind} settings table"
    assert block.group(1) == settings.markdown_table(schema), \
        f"README's {kind} settings table is stale: regenerate it with `python -m db.settings {kind}`"
