"""The gr00t teacher against Isaac-GR00T's real N1.5 source: a tiny random GR00T N1.5 of the
real architecture, on CPU, through the real Gr00tPolicy, GR00TTransform, Eagle processor and
backbone. Run by ``make test-gr00t`` (its own environment, .venv-gr00t, with GR00T's pins and
GR00T_SRC naming the source); skipped by ``make test``.

Stand-ins, on these tests' path only (tests/gr00t/stand_ins): an empty ``pytorch3d`` and the
schemas of two torchvision operators (see their docstrings). Everything else is real.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest


def _transformers_version() -> str | None:
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return None


GR00T_SRC = os.environ.get("GR00T_SRC")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not GR00T_SRC or _transformers_version() != "4.51.3",
                       reason="GR00T's real source runs under make test-gr00t (GR00T_SRC, "
                              "transformers 4.51.3 in .venv-gr00t)"),
]

HERE = Path(__file__).resolve().parent
STAND_INS = HERE / "stand_ins"
TASKS = ["007bbfb7", "00d62c1b", "017c7c7b"]        # arc1/train: 5, 5 and 3 training pairs
TILE_TOKENS = 256                                    # one 224-px tile at patch 14, no shuffle


@pytest.fixture(scope="module")
def gr00t_env(tmp_path_factory):
    """A writable copy of the read-only GR00T source with its Eagle config shrunk, a tiny random
    GR00T N1.5 saved from it, and the environment every process of these tests runs with."""
    root = tmp_path_factory.mktemp("gr00t")
    source = root / "src"
    shutil.copytree(Path(GR00T_SRC) / "gr00t", source / "gr00t", copy_function=shutil.copyfile)
    for folder, _, _ in os.walk(source):           # copytree kept the source's read-only dirs
        os.chmod(folder, 0o755)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(STAND_INS), str(source)]),
               HF_HOME=str(root / "hf"), HF_HUB_OFFLINE="1", NO_ALBUMENTATIONS_UPDATE="1",
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    model = root / "GR00T-N1.5-tiny"
    built = subprocess.run([sys.executable, str(HERE / "random_gr00t.py"), str(model), "--tiny", str(source)],
                           env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    eagle = json.loads((source / "gr00t/model/backbone/eagle2_hg_model/config.json").read_text())
    return {"env": env, "source": source, "model": model,
            "width": eagle["text_config"]["hidden_size"]}


@pytest.fixture(scope="module")
def teacher(gr00t_env):
    """The same teacher, in this process (the subprocesses get the same path and settings)."""
    saved_path, saved_env = list(sys.path), dict(os.environ)
    sys.path[:0] = gr00t_env["env"]["PYTHONPATH"].split(os.pathsep)
    os.environ.update({k: v for k, v in gr00t_env["env"].items() if k != "PYTHONPATH"})
    import torchvision_ops_stand_in  # noqa: F401  (before anything imports torchvision)

    from engine.teachers import make_teacher
    with pytest.warns(UserWarning, match="runs on the CPU"):
        made = make_teacher("gr00t", model_path=str(gr00t_env["model"]), device="cpu")
    yield made
    sys.path[:] = saved_path
    os.environ.clear()
    os.environ.update(saved_env)


@pytest.fixture(scope="module")
def extracted(gr00t_env, tmp_path_factory):
    """``sage-engine extract --teacher gr00t`` on three ARC tasks, as a user types it."""
    workspace = tmp_path_factory.mktemp("workspace")
    result = subprocess.run(
        [sys.executable, "-m", "engine", "extract", "--teacher", "gr00t",
         f"--teacher-option=model_path={gr00t_env['model']}", "--teacher-option=device=cpu",
         "--task-ids", ",".join(TASKS), "--batch-size", "4", "--store", "gr00t-tiny",
         "--workspace", str(workspace)],
        env=gr00t_env["env"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return workspace


def processed(teacher, views):
    """What the real GR00TTransform and Eagle processor make of these views."""
    return teacher.policy.apply_transforms(teacher.observation(views))


def image_token_id(teacher) -> int:
    processor = teacher.policy.modality_transform.transforms[0].eagle_processor
    return processor.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")


def test_features_land_in_the_store_with_the_backbone_width_and_real_token_counts(
        gr00t_env, teacher, extracted):
    from engine.arc import load_dataset
    from engine.features import FeatureStore
    from engine.teacher_view import build_teacher_view

    store = FeatureStore.open(extracted / "features" / "gr00t-tiny")
    manifest = store.manifest
    assert manifest["feature_dim"] == gr00t_env["width"] == teacher.feature_dim
    assert manifest["teacher"]["attn_implementation"] == "sdpa"
    tasks = {t.id: t for t in load_dataset("arc1/train").tasks if t.id in TASKS}
    expected_ids = {f"{t}/{kind}/{i}" for t in TASKS
                    for kind in ("train", "test") for i in range(len(getattr(tasks[t], kind)))}
    assert set(store.example_ids) == expected_ids

    for example in sorted(expected_ids)[::4]:              # a spread of 5-frame and 3-frame views
        task_id, kind, index = example.split("/")
        view = build_teacher_view(tasks[task_id], kind, int(index))
        batch = processed(teacher, [view])
        real_tokens = int(batch["eagle_attention_mask"][0].sum())
        image_tokens = int((batch["eagle_input_ids"][0] == image_token_id(teacher)).sum())
        assert image_tokens == TILE_TOKENS * view.frames.shape[0]
        stored = store.get_tensor(example)
        assert tuple(stored.shape) == (real_tokens, gr00t_env["width"])
        # The CLI's process and this one give the same features (stored as float16).
        features, mask = teacher.encode([view])
        assert mask.sum() == real_tokens
        assert np.array_equal(stored.numpy(), features[0][mask[0]].half().numpy())
        assert stored.float().std() > 0


def test_a_changed_query_output_leaves_tokens_and_features_bit_identical(teacher):
    """The leak test through the real processor: changing a query's own output changes
    nothing the teacher is given or gives back; changing a demonstration's output does (so
    the comparison can fail)."""
    import torch

    from engine.arc import ArcTask, Pair, load_dataset
    from engine.teacher_view import build_teacher_view

    task = next(t for t in load_dataset("arc1/train").tasks if t.id == TASKS[0])
    flip = lambda pair: Pair(pair.input, (9 - pair.output).astype(np.uint8))   # noqa: E731
    train_0_changed = ArcTask(task.id, (flip(task.train[0]),) + task.train[1:], task.test)
    test_changed = ArcTask(task.id, task.train, (flip(task.test[0]),))

    def given_and_returned(changed_task, kind):
        views = [build_teacher_view(changed_task, kind, 0)]
        return processed(teacher, views), teacher.encode(views)

    for changed_task, kind in ((train_0_changed, "train"), (test_changed, "test")):
        (tokens, (features, mask)) = given_and_returned(task, kind)
        (tokens_after, (features_after, mask_after)) = given_and_returned(changed_task, kind)
        for key in ("eagle_input_ids", "eagle_attention_mask", "eagle_pixel_values"):
            assert torch.equal(tokens[key], tokens_after[key]), (kind, key)
        assert torch.equal(mask, mask_after) and torch.equal(features, features_after), kind

    # The test query shows train pair 0 as a demonstration: there the change must show.
    (tokens, (features, _)), (tokens_after, (features_after, _)) = \
        given_and_returned(task, "test"), given_and_returned(train_0_changed, "test")
    assert not torch.equal(tokens["eagle_pixel_values"], tokens_after["eagle_pixel_values"])
    assert not torch.equal(features, features_after)


def test_readme_token_figures_match_the_eagle_processor(teacher):
    """README: one 224-px tile = 256 tokens, the default view (--cell-px 9: 270 px) is one
    tile, and a default example (2 demonstrations + the query input) is 1,365 tokens."""
    from engine.arc import load_dataset
    from engine.teacher_view import TeacherViewConfig, build_teacher_view, eagle_image_tokens

    task = next(t for t in load_dataset("arc1/train").tasks if t.id == TASKS[0])
    default_view = build_teacher_view(task, "test", 0)
    for side in (224, TeacherViewConfig().frame_px, 289, 290, 578, 579, 900):
        one_image = replace(default_view, frames=np.full((1, side, side, 3), 255, np.uint8))
        ids = processed(teacher, [one_image])["eagle_input_ids"][0]
        assert int((ids == image_token_id(teacher)).sum()) == eagle_image_tokens(side, side), side
    assert default_view.frames.shape[:3] == (5, 270, 270)
    assert int(processed(teacher, [default_view])["eagle_attention_mask"][0].sum()) == 1365


def test_the_settings_check_never_loads_the_model_and_bad_weights_say_so(gr00t_env, teacher, tmp_path):
    """The dashboard's settings check must answer in seconds, not load 3B parameters: with
    weights that cannot load, the check still passes and making the teacher says why."""
    from engine.teachers import TeacherError, make_teacher

    broken = tmp_path / "GR00T-N1.5-broken"
    shutil.copytree(gr00t_env["model"], broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not weights")
    config = {"teacher": "gr00t", "teacher_options": {"model_path": str(broken), "device": "cpu"}}
    check = subprocess.run([sys.executable, "-m", "engine", "check", "--kind", "extract",
                            "--config-json", json.dumps(config)],
                           env=gr00t_env["env"], capture_output=True, text=True, timeout=300)
    assert json.loads(check.stdout.splitlines()[-1]) == {"ok": True, "warnings": []}, check.stderr[-2000:]
    with pytest.warns(UserWarning, match="runs on the CPU"), \
            pytest.raises(TeacherError, match="cannot load GR00T from .*GR00T-N1.5-broken"):
        make_teacher("gr00t", model_path=str(broken), device="cpu")


def test_a_sage_seed_student_trains_on_the_gr00t_store(extracted):
    from db.store import Store
    from engine.runner import run_job
    from engine.train import train_job

    config = {"task_ids": TASKS, "max_grid": None, "max_tasks": None, "features": "gr00t-tiny",
              "student": "sage-seed", "batch_size": 4, "max_steps": 3, "val_tasks": 1,
              "val_every_steps": 3, "device": "cpu"}
    with Store.open(extracted) as store:
        run = store.create_run("distil-from-gr00t", "train", config)
    assert run_job(extracted, run.id, train_job) == 0
    with Store.open_readonly(extracted) as store:
        assert store.get_run(run.id).status == "finished"
        mse = store.read_metrics_after(run.id, "loss_mse").values
        assert len(mse) == 3 and all(np.isfinite(v) and v > 0 for v in mse)
