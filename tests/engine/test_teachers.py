"""Teachers: the built-in encoder, a real (tiny) Hugging Face encoder, and the GR00T
adapter against a STAND-IN gr00t package (GR00T itself needs a GPU and 5 GB of weights)."""

import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from db.store import Store
from engine.arc import ArcTask, Pair
from engine.teacher_view import TeacherViewConfig, build_teacher_view
from engine.teachers import TeacherError, check_teacher, make_teacher
from engine.teachers.gr00t import flash_attn_available, resolve_settings


def make_task(n_train=3, seed=0, task_id="t"):
    rng = np.random.default_rng(seed)
    pairs = tuple(Pair(rng.integers(0, 10, (3, 4)).astype(np.uint8),
                       rng.integers(0, 10, (2, 2)).astype(np.uint8)) for _ in range(n_train + 1))
    return ArcTask(task_id, pairs[:n_train], pairs[n_train:])


def with_test_output(task, new_output):
    return ArcTask(task.id, task.train, (Pair(task.test[0].input, np.asarray(new_output, np.uint8)),))


def views_of_different_lengths():
    # 3 demos kept -> 7 frames; a task with 1 train pair -> 3 frames.
    config = TeacherViewConfig(max_demos=3)
    return [build_teacher_view(make_task(3), "test", 0, config),
            build_teacher_view(make_task(1, seed=1), "test", 0, config)]


# ------------------------------------------------------------------ builtin
def test_builtin_is_deterministic_for_a_seed_and_masks_padding():
    views = views_of_different_lengths()
    a = make_teacher("builtin", dim=64, seed=3)
    features, mask = a.encode(views)
    assert features.shape == (2, 700, 64) and features.dtype == torch.float32
    assert mask[0].all() and mask[1].sum() == 300 and not mask[1, 300:].any()
    again, _ = make_teacher("builtin", dim=64, seed=3).encode(views)
    assert torch.equal(features, again)
    other, _ = make_teacher("builtin", dim=64, seed=4).encode(views)
    assert not torch.allclose(features, other)
    assert a.identity() == {"name": "builtin", "version": 1, "dim": 64, "seed": 3, "pool_px": 9, "patch": 3}


def test_builtin_features_do_not_depend_on_the_rest_of_the_batch():
    views = views_of_different_lengths()
    teacher = make_teacher("builtin", dim=32)
    together, _ = teacher.encode(views)
    alone, _ = teacher.encode(views[1:])
    assert torch.allclose(together[1, :300], alone[0], atol=1e-5)


def test_unknown_teacher_or_option_is_a_clear_error():
    with pytest.raises(TeacherError, match="unknown teacher 'clip': use one of builtin, hf, gr00t"):
        make_teacher("clip")
    with pytest.raises(TeacherError, match="bad option for the builtin teacher"):
        make_teacher("builtin", colour=3)


# ----------------------------------------------------------------------- hf
@pytest.fixture(scope="module")
def tiny_siglip_folder(tmp_path_factory):
    """A real, randomly initialised SiglipVisionModel saved with save_pretrained."""
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    folder = tmp_path_factory.mktemp("tiny-siglip")
    torch.manual_seed(0)
    config = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, image_size=32, patch_size=8)
    SiglipVisionModel(config).save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_hf_teacher_loads_a_local_folder_and_encodes_every_frame(tiny_siglip_folder):
    teacher = make_teacher("hf", model_path=str(tiny_siglip_folder), layer=-2, device="cpu")
    assert teacher.feature_dim == 32 and teacher.identity()["layer"] == -2
    views = views_of_different_lengths()
    features, mask = teacher.encode(views)
    # 16 patch tokens per 32-px frame: 7 frames and 3 frames.
    assert features.shape == (2, 7 * 16, 32)
    assert mask[0].all() and mask[1].sum() == 3 * 16
    last, _ = make_teacher("hf", model_path=str(tiny_siglip_folder), layer=-1, device="cpu").encode(views)
    assert not torch.allclose(features, last)


def test_hf_teacher_never_sees_the_query_output(tiny_siglip_folder):
    teacher = make_teacher("hf", model_path=str(tiny_siglip_folder), device="cpu")
    task = make_task()
    changed = with_test_output(task, [[9, 9, 9]] * 5)
    a, _ = teacher.encode([build_teacher_view(task, "test", 0)])
    b, _ = teacher.encode([build_teacher_view(changed, "test", 0)])
    assert torch.equal(a, b)


def test_hf_teacher_without_a_model_folder_says_what_to_pass(tmp_path):
    with pytest.raises(TeacherError, match="needs model_path"):
        make_teacher("hf")
    with pytest.raises(TeacherError, match="no config.json"):
        make_teacher("hf", model_path=str(tmp_path))


def test_checking_an_hf_teacher_refuses_what_making_it_would_without_loading_the_model(
        tiny_siglip_folder, tmp_path):
    check_teacher("hf", model_path=str(tiny_siglip_folder), device="cpu")
    for options, message in [({}, "needs model_path"), ({"model_path": str(tmp_path)}, "no config.json"),
                             ({"model_path": str(tiny_siglip_folder), "dtype": "int8"}, "dtype must be"),
                             ({"model_path": str(tiny_siglip_folder), "layer": "last"}, "hidden-state index"),
                             ({"model_path": str(tiny_siglip_folder), "colour": 3}, "bad option")]:
        with pytest.raises(TeacherError, match=message):
            check_teacher("hf", **options)
        with pytest.raises(TeacherError, match=message):
            make_teacher("hf", **options)
    # Weights that do not load: the check (which never loads them) passes, making fails.
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (broken / name).write_bytes((tiny_siglip_folder / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"not weights")
    check_teacher("hf", model_path=str(broken), device="cpu")
    with pytest.raises(TeacherError, match="cannot load"):
        make_teacher("hf", model_path=str(broken), device="cpu")
    (broken / "model.safetensors").unlink()
    with pytest.raises(TeacherError, match="no weights"):
        check_teacher("hf", model_path=str(broken))
    with pytest.raises(TeacherError, match="unknown teacher 'clip'"):
        check_teacher("clip")


# -------------------------------------------------------------------- gr00t
def gr00t_model_folder(tmp_path):
    """A folder shaped like a GR00T N1.5 checkpoint (no weights: those need the real package)."""
    folder = tmp_path / "GR00T-N1.5-3B"
    (folder / "experiment_cfg").mkdir(parents=True)
    (folder / "experiment_cfg" / "metadata.json").write_text(json.dumps({"gr1": {}}))
    (folder / "config.json").write_text(json.dumps({"model_type": "gr00t_n1_5"}))
    return folder


@pytest.fixture(autouse=True)
def no_flash_attn_placeholder_left():
    """The gr00t teacher puts a flash_attn placeholder in sys.modules when flash-attn is
    missing; take it away again so no other test sees it."""
    yield
    for name in [m for m in sys.modules if m.split(".")[0] == "flash_attn"
                 and (sys.modules[m].__doc__ or "").startswith("placeholder")]:
        del sys.modules[name]


def test_gr00t_teacher_without_weights_or_package_says_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(TeacherError, match="needs model_path"):
        make_teacher("gr00t")
    with pytest.raises(TeacherError, match="not a GR00T N1.5 model folder"):
        make_teacher("gr00t", model_path=str(tmp_path), device="cpu")
    folder = str(gr00t_model_folder(tmp_path))
    with pytest.raises(TeacherError, match="attn_implementation=flash-attention is not one of"):
        make_teacher("gr00t", model_path=folder, attn_implementation="flash-attention")
    if not flash_attn_available():
        with pytest.raises(TeacherError, match="needs flash-attn, which is not installed: pip install"):
            make_teacher("gr00t", model_path=folder, attn_implementation="flash_attention_2")
    # Without a GPU (or without flash-attn) the default attention is sdpa, on the CPU.
    assert resolve_settings(folder, "auto", "cpu")[1:] == ("sdpa", "cpu")
    if not torch.cuda.is_available():
        assert resolve_settings(folder, None, None)[1:] == ("sdpa", "cpu")
    with pytest.raises(TeacherError, match="flash_attention_2 runs only on a GPU|needs flash-attn"):
        make_teacher("gr00t", model_path=folder, device="cpu", attn_implementation="flash_attention_2")
    monkeypatch.setitem(sys.modules, "gr00t", None)  # as if not installed
    with pytest.raises(TeacherError, match="Isaac-GR00T n1.5-release"):
        make_teacher("gr00t", model_path=folder, device="cpu", attn_implementation="sdpa")
    if not torch.cuda.is_available():
        with pytest.raises(TeacherError, match="torch sees no NVIDIA GPU: .* pass device=cpu"):
            make_teacher("gr00t", model_path=folder, device="cuda")


@pytest.mark.slow
@pytest.mark.parametrize("options, message", [
    (["model_path=/no/such/GR00T-N1.5-3B"], "is not a GR00T N1.5 model folder"),
    (["model_path={folder}", "attn_implementation=flash_attention_2"],
     "needs flash-attn, which is not installed: pip install"),
    (["model_path={folder}", "attn_implementation=sdpa"], "cannot import gr00t"),
])
def test_extract_with_gr00t_refuses_in_one_line_before_any_run(workspace, tmp_path, options, message):
    """Acceptance: a wrong model folder, flash-attn asked for but missing, or no gr00t package:
    one line saying what to do, exit 2, and no run left behind."""
    if "flash-attn" in message and flash_attn_available():
        pytest.skip("flash-attn is installed here")
    if "gr00t" in message and importlib.util.find_spec("gr00t") is not None:
        pytest.skip("gr00t is installed here")
    folder = gr00t_model_folder(tmp_path)
    args = [f"--teacher-option={o.format(folder=folder)}" for o in options]
    result = subprocess.run([sys.executable, "-m", "engine", "extract", "--teacher", "gr00t", *args,
                             "--max-tasks", "1", "--workspace", str(workspace)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    with Store.open_readonly(workspace) as store:
        assert store.list_runs() == []


# A STAND-IN for the real gr00t package (n1.5-release), with just the names the adapter
# uses. Its policy records the observation dict it is given and answers like the real
# backbone: left-padded bf16 features [B, L, 2048] and an attention mask.
STAND_IN_GR00T = {
    "gr00t/__init__.py": "RECORDED = []\n",
    "gr00t/data/__init__.py": "",
    "gr00t/data/dataset.py": """
        class ModalityConfig:
            def __init__(self, delta_indices, modality_keys):
                self.delta_indices, self.modality_keys = delta_indices, modality_keys
    """,
    "gr00t/data/transform/__init__.py": "",
    "gr00t/data/transform/base.py": """
        class ComposedModalityTransform:
            def __init__(self, transforms):
                self.transforms = transforms
            def __call__(self, obs):
                return obs
    """,
    "gr00t/model/__init__.py": "",
    "gr00t/model/backbone/__init__.py": "",
    "gr00t/model/backbone/eagle_backbone.py": """
        from transformers import AutoConfig
    """,
    "gr00t/model/transforms.py": """
        class GR00TTransform:
            def __init__(self, **kwargs):
                self.kwargs = kwargs
    """,
    "gr00t/model/policy.py": """
        import types

        import torch
        import gr00t

        class LanguageModel(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lm_head = torch.nn.Linear(4, 151680)

        class Backbone(torch.nn.Module):
            select_layer = 12

            def __init__(self):
                super().__init__()
                self.eagle_model = torch.nn.Module()
                self.eagle_model.language_model = LanguageModel()
                self.eagle_model.config = types.SimpleNamespace(
                    text_config=types.SimpleNamespace(hidden_size=2048))
            def forward(self, inputs):
                video = inputs["video"]
                b, t = video.shape[:2]
                real = [256 * t + 40 - i for i in range(b)]   # rows differ in length
                longest = max(real)
                features = torch.full((b, longest, 2048), float("nan"), dtype=torch.bfloat16)
                mask = torch.zeros((b, longest), dtype=torch.long)
                for i, n in enumerate(real):               # left padding, like Eagle
                    features[i, longest - n:] = float(i + 1)
                    mask[i, longest - n:] = 1
                return {"backbone_features": features, "backbone_attention_mask": mask}

        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = Backbone()
            def prepare_input(self, batch):
                return batch, {}

        class Gr00tPolicy:
            def __init__(self, model_path, embodiment_tag, modality_config, modality_transform, device):
                gr00t.RECORDED.append({"init": dict(model_path=model_path, embodiment_tag=embodiment_tag,
                                                    modality_config=modality_config, device=device)})
                self.model = Model()
            def apply_transforms(self, obs):
                gr00t.RECORDED.append({"obs": obs})
                return obs
    """,
}


@pytest.fixture
def stand_in_gr00t(tmp_path, monkeypatch):
    root = tmp_path / "stand_in"
    for name, source in STAND_IN_GR00T.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m == "gr00t" or m.startswith("gr00t.")]:
        monkeypatch.delitem(sys.modules, name)
    import gr00t
    yield gr00t
    for name in [m for m in sys.modules if m == "gr00t" or m.startswith("gr00t.")]:
        del sys.modules[name]


def test_gr00t_adapter_against_a_stand_in_package(stand_in_gr00t, tmp_path):
    folder = gr00t_model_folder(tmp_path)
    with pytest.warns(UserWarning, match="runs on the CPU.*3B GR00T N1.5 takes many seconds"):
        teacher = make_teacher("gr00t", model_path=str(folder), device="cpu", attn_implementation="sdpa")
    init = stand_in_gr00t.RECORDED[0]["init"]
    assert init["model_path"] == str(folder.resolve()) and init["embodiment_tag"] == "gr1"
    assert set(init["modality_config"]) >= {"video", "state", "action", "language"}
    lm_head = teacher.policy.model.backbone.eagle_model.language_model.lm_head
    assert isinstance(lm_head, torch.nn.Identity)

    task = make_task(3)
    views = [build_teacher_view(task, "test", 0), build_teacher_view(task, "train", 0),
             build_teacher_view(make_task(1, seed=1), "test", 0)]   # 5, 5 and 3 frames
    features, mask = teacher.encode(views)
    observations = [r["obs"] for r in stand_in_gr00t.RECORDED if "obs" in r]
    assert len(observations) == 2          # one call per frame count
    first = observations[0]
    assert set(first) == {"video", "state", "annotation.0"}
    video = first["video"]
    assert video.dtype == np.uint8 and video.ndim == 6 and video.shape == (2, 5, 1, 270, 270, 3)
    assert first["state"].shape == (2, 1, 64)
    assert list(first["annotation.0"]) == [views[0].prompt] * 2
    # The frames are exactly the views' frames: demonstrations and the query input, and
    # no image of the test output anywhere.
    assert np.array_equal(video[0, :, 0], views[0].frames)
    test_output_frame = build_teacher_view(
        ArcTask("x", (Pair(task.test[0].output, task.test[0].output),), task.test), "test", 0).frames[0]
    assert not any(np.array_equal(f, test_output_frame) for f in video[0, :, 0])

    # Left padding removed with the mask: NaN padding never reaches the result.
    assert features.shape[0] == 3 and features.shape[2] == 2048
    assert mask.sum(1).tolist() == [256 * 5 + 40, 256 * 5 + 40 - 1, 256 * 3 + 40]
    assert not torch.isnan(features[mask]).any()
    assert torch.all(features[0][mask[0]] == 1) and torch.all(features[1][mask[1]] == 2)
