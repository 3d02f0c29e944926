"""The new-run form: messages next to wrong values, the engine's verdict shown on its
field, extract settings, and what a launch hands to the engine."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select, Static

from db.store import Store
from sage_tui import control
from sage_tui.app import SageApp
from sage_tui.screens.new_run import NewRunScreen, validate_form, DEFAULTS
from sage_tui.screens.runs import RunsScreen

from tests.tui.helpers import wait_until


def error_text(screen, key: str) -> str:
    widget = screen.query_one(f"#error-{key}", Static)
    return str(widget.render()) if widget.display else ""


async def open_form(app, pilot) -> NewRunScreen:
    await pilot.press("n")
    assert isinstance(app.screen, NewRunScreen)
    return app.screen


async def test_wrong_values_get_a_message_next_to_them(workspace):
    app = SageApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(app, pilot)
        form.query_one("#lr", Input).value = "fast"
        form.query_one("#epochs", Input).value = "0"
        form.query_one("#device", Input).value = "gpu"
        await pilot.pause()
        assert "expected float" in error_text(form, "lr")
        assert "at least 1" in error_text(form, "epochs")
        assert "auto, cpu, cuda or cuda:N" in error_text(form, "device")
        assert error_text(form, "batch_size") == ""
        await pilot.press("ctrl+s")
        assert "fix the 3 marked field" in str(form.query_one("#form-message").render())
        assert isinstance(app.screen, NewRunScreen)


async def test_a_dataset_folder_that_does_not_exist_is_caught(workspace, tmp_path):
    app = SageApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(app, pilot)
        form.query_one("#dataset", Select).value = "folder"
        await pilot.pause()
        assert form.query_one("#row-dataset_folder").display
        form.query_one("#dataset_folder", Input).value = str(tmp_path / "nowhere")
        await pilot.pause()
        assert "no folder at" in error_text(form, "dataset_folder")
        (tmp_path / "tasks").mkdir()
        form.query_one("#dataset_folder", Input).value = str(tmp_path / "tasks")
        await pilot.pause()
        assert "no .json task files" in error_text(form, "dataset_folder")
        (tmp_path / "tasks" / "abc.json").write_text("{}")
        form.query_one("#dataset_folder", Input).value = str(tmp_path / "tasks") + "/"
        await pilot.pause()
        assert error_text(form, "dataset_folder") == ""


async def test_extract_form_checks_the_teacher_folder(workspace, tmp_path):
    app = SageApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(app, pilot)
        form.query_one("#kind", Select).value = "extract"
        await pilot.pause()
        assert not form.query_one("#row-lr").display and form.query_one("#row-teacher").display
        assert not form.query_one("#row-teacher_folder").display   # the built-in needs none
        form.query_one("#teacher", Select).value = "hf"
        await pilot.pause()
        form.query_one("#teacher_folder", Input).value = str(tmp_path)
        await pilot.pause()
        assert "no config.json" in error_text(form, "teacher_folder")


def test_validate_form_builds_train_and_extract_configs(tmp_path):
    values = dict(DEFAULTS, lr="1e-3", max_tasks="", device="cuda:1", gpus="2")
    result = validate_form(values, tmp_path, base={"val_every_steps": 50})
    assert result.errors == {}
    assert result.gpus == 2 and result.name == "train"
    assert result.config["lr"] == 0.001 and result.config["max_tasks"] is None
    assert result.config["val_every_steps"] == 50   # a clone keeps settings the form has no field for
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    values = dict(DEFAULTS, kind="extract", teacher="hf", teacher_folder=str(tmp_path / "model"),
                  features="arc1-hf", device="cuda:0", name="x")
    result = validate_form(values, tmp_path)
    assert result.errors == {}
    assert result.config["teacher_options"] == {"model_path": str(tmp_path / "model"), "device": "cuda:0"}
    assert result.config["store"] == "arc1-hf" and "lr" not in result.config
    assert validate_form(dict(DEFAULTS, gpus="2", device="cpu"), tmp_path).errors["gpus"]


async def test_the_engines_refusal_shows_on_its_field(workspace, tmp_path):
    """A folder the form accepts (it exists) that the real engine refuses (not a store)."""
    (tmp_path / "not-a-store").mkdir()
    app = SageApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(app, pilot)
        form.query_one("#features", Input).value = str(tmp_path / "not-a-store")
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "no manifest.json" in error_text(form, "features"), timeout=60,
                         what="the engine's message on features")
        assert isinstance(app.screen, NewRunScreen)
    with Store.open_readonly(workspace) as store:
        assert store.list_runs() == []


async def test_nothing_launches_when_the_check_itself_fails(workspace, monkeypatch):
    """Today an unchecked configuration launched with a warning; now the reason shows
    and nothing starts. The check really times out (a limit no engine can meet)."""
    monkeypatch.setattr(control, "CHECK_TIMEOUT_S", 0.001)
    app = SageApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(app, pilot)
        form.query_one("#kind", Select).value = "extract"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "not started" in str(form.query_one("#form-message").render()),
                         timeout=20, what="the reason")
        assert "to check the settings" in str(form.query_one("#form-message").render())
        assert isinstance(app.screen, NewRunScreen) and not form.busy
    with Store.open_readonly(workspace) as store:
        assert store.list_runs() == []


def test_the_form_reads_nan_and_ranges_from_the_schema(tmp_path):
    values = dict(DEFAULTS, lr="nan", w_mse="inf", epochs="1.5", student="sage-seed")
    errors = validate_form(values, tmp_path).errors
    assert "finite" in errors["lr"] and "finite" in errors["w_mse"] and "expected int" in errors["epochs"]
    errors = validate_form(dict(DEFAULTS, student="sage-seed"), tmp_path).errors
    assert "features" in errors and "sage-seed" in errors["features"]


@pytest.mark.slow
def test_check_config_asks_the_real_engine():
    verdict = control.check_config("train", {"lr": 2})
    assert (verdict.ok, verdict.field) == (False, "lr")
    assert control.check_config("train", {"epochs": 3}).ok
    verdict = control.check_config("extract", {"batch_size": 0})
    assert (verdict.ok, verdict.field) == (False, "batch_size") and "at least 1" in verdict.message
    # The teacher is loaded for real: a folder that holds no model is refused before launch.
    verdict = control.check_config("extract", {"teacher": "hf", "teacher_options": {"model_path": "/tmp"}})
    assert (verdict.ok, verdict.field) == (False, "teacher") and "/tmp" in verdict.message
    assert control.check_config("extract", {"teacher": "builtin"}).ok


def test_the_forms_defaults_are_the_engines():
    """Both read db/settings.py: the form's defaults are the engine's."""
    from engine.config import TrainConfig
    from sage_tui.screens.new_run import DEFAULTS

    engine_defaults = TrainConfig().to_dict()
    for key in ("dataset", "student", "preset", "device"):
        assert DEFAULTS[key] == engine_defaults[key], key
    for key in ("epochs", "batch_size", "lr", "w_task", "w_mse", "w_cosine", "max_tasks", "seed"):
        assert float(DEFAULTS[key]) == float(engine_defaults[key]), key


async def test_an_evaluation_set_that_overlaps_the_training_tasks_is_named_before_launch(
        workspace, monkeypatch):
    """The real engine check: arc2/train holds ARC-AGI-1 evaluation tasks. The first start
    shows the warning and launches nothing; starting again launches anyway."""
    launched = []

    class FakeRun:
        id = 8

    monkeypatch.setattr(control, "start_run",
                        lambda ws, kind, name, config, gpus=1: launched.append(config) or FakeRun)
    app = SageApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen), timeout=10, what="the runs")
        form = NewRunScreen("train", prefill={"dataset": "arc2/train", "eval_dataset": "arc1/eval"})
        app.push_screen(form)
        await pilot.pause()
        await pilot.press("ctrl+s")
        message = lambda: str(form.query_one("#form-message").render())  # noqa: E731
        await wait_until(pilot, lambda: "share pairs" in message(), timeout=60, what="the overlap warning")
        assert "arc1/eval tasks" in message() and "arc2/train" in message()
        assert launched == [] and app.screen is form
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen), timeout=60,
                         what="the launch to close the form")
        assert launched[0]["eval_dataset"] == "arc1/eval"
        # Let the runs poll the launch started land before the app closes.
        await app.workers.wait_for_complete()
        await pilot.pause()


async def test_ctrl_s_at_80x24_brings_the_first_bad_field_into_view(workspace):
    app = SageApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(app, pilot)
        form.query_one("#seed", Input).value = "abc"        # the last field, below the fold
        form.query_one("#gpus", Input).value = "two"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert form.query_one("#gpus", Input).has_focus      # the first of the two, in form order
        scroll = form.query_one("#form")
        for widget_id in ("#gpus", "#error-gpus"):
            region = form.query_one(widget_id).region
            assert scroll.region.contains_region(region), f"{widget_id} is out of sight"
        assert any("fix the 2 marked fields: gpus first" in n.message for n in app._notifications)


@pytest.mark.slow
async def test_an_evaluation_with_test_time_training_starts_from_the_form(workspace, tmp_path):
    """No checkpoint needed: a fresh per-task student learns each task of the dataset; the
    run shows in the runs list and its evaluation stores every task."""
    import json as json_module

    folder = tmp_path / "tasks"
    folder.mkdir()
    for n in range(2):
        pair = {"input": [[1, 0], [0, 1]], "output": [[4, 0], [0, 4]]}
        (folder / f"t{n}.json").write_text(json_module.dumps({"train": [pair, pair], "test": [pair]}))
    app = SageApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(app, pilot)
        form.query_one("#kind", Select).value = "eval"
        await pilot.pause()
        assert form.query_one("#dataset", Select).value == "arc1/eval"   # the kind's own default
        assert form.query_one("#row-ttt_steps").display and not form.query_one("#row-student").display
        assert form.query_one("#row-device").display   # the per-task students may train on a GPU
        form.query_one("#dataset", Select).value = "folder"
        await pilot.pause()
        form.query_one("#dataset_folder", Input).value = str(folder)
        form.query_one("#ttt_steps", Input).value = "4"
        form.query_one("#ttt_models", Input).value = "1"
        form.query_one("#workers", Input).value = "1"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen), timeout=90,
                         what="the launch to close the form")
        await app.workers.wait_for_complete()

    def finished():
        with Store.open_readonly(workspace) as store:
            [run] = store.list_runs()
            return run if run.status == "finished" else None
    import time
    deadline = time.time() + 120
    while not finished() and time.time() < deadline:
        time.sleep(0.5)
    run = finished()
    assert run is not None and run.kind == "eval" and run.config["ttt_steps"] == 4 and run.config["ttt_models"] == 1
    assert run.config["device"] == "auto" and run.device in ("cpu", "cuda:0")   # what was used, not "auto"
    with Store.open_readonly(workspace) as store:
        evaluation = store.get_evaluation(store.evaluation_of_run(run.id))
    assert evaluation.n_tasks == 2 and evaluation.checkpoint_id is None


def test_the_recipe_settings_reach_the_run_config(tmp_path):
    """The settings of the recipe that generalises are on the form and in the config."""
    values = dict(DEFAULTS, kind="train", student="recursive", augment="True", augment_translate="4",
                  task_embedding="32", eval_dataset="arc1/eval", eval_demos="True")
    result = validate_form(values, tmp_path)
    assert result.errors == {}
    assert {key: result.config[key] for key in ("augment", "augment_translate", "task_embedding",
                                                  "eval_dataset", "eval_demos", "loss_region")} == \
        {"augment": True, "augment_translate": 4, "task_embedding": 32, "eval_dataset": "arc1/eval",
         "eval_demos": True, "loss_region": "grid"}
    without = validate_form(dict(values, eval_dataset=""), tmp_path)
    assert "eval_demos" in without.errors       # transductive training needs the evaluation set
