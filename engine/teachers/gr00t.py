"""The GR00T N1.5 backbone (Eagle 2.5 VLM cut at layer 12) as a frozen teacher.

Needs the Isaac-GR00T ``n1.5-release`` package (transformers==4.51.3) and the model weights
in a local folder; flash-attn and a CUDA GPU are optional. Everything is imported only when
this teacher is made, and every missing piece becomes a TeacherError naming what to install
or pass. Facts used here: shared/reference/gr00t.md; ``make test-gr00t`` runs this file
against Isaac-GR00T's real source with a tiny random N1.5 on CPU.

- The policy is loaded with the ``gr1`` embodiment: the shipped checkpoint has metadata
  for it, and the backbone reads only the ``eagle_*`` inputs, so the embodiment does not
  change the features (no hub-cache patching with dummy statistics).
- The observation is the 6-D batched form ``video [B, T, V=1, H, W, 3]`` uint8, which
  makes GR00TTransform run the Eagle chat template and processor for us.
- The backbone's attention mask is kept (its padding is on the left).
- The LM head is replaced by an identity: the features are hidden states, and the head
  would compute 151,680 logits per position for nothing.
- Attention: ``flash_attention_2`` when flash-attn imports, else ``sdpa``. GR00T's Eagle
  config asks for flash_attention_2 and its SigLIP tower is forced to it, so for ``sdpa``
  or ``eager`` the Eagle config is read with the chosen implementation while the policy
  loads, and every attention config of the loaded backbone is set to it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import sys
import types
import warnings
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from engine.teacher_view import TeacherView
from engine.teachers import TeacherError, pad_token_sequences

INSTALL_HINT = ("the gr00t teacher needs Isaac-GR00T n1.5-release installed (git clone -b "
                "n1.5-release https://github.com/NVIDIA/Isaac-GR00T; pip install -e .[base]) in "
                "a Python 3.10 environment with transformers==4.51.3")
FLASH_ATTN_INSTALL = "pip install --no-build-isolation flash-attn==2.7.1.post4"
FLASH_ATTN_HINT = f"{FLASH_ATTN_INSTALL}, or pass attn_implementation=sdpa"
ATTENTION_IMPLEMENTATIONS = ("flash_attention_2", "sdpa", "eager")
STATE_DIM = 64      # GR00TTransform pads the state to max_state_dim; zeros here
ACTION_DIM = 32
ACTION_HORIZON = 16


def flash_attn_available() -> bool:
    """Whether the real flash-attn is installed (its distribution, not a placeholder module)."""
    try:
        importlib.metadata.version("flash_attn")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def resolve_settings(model_path: str | None, attn_implementation: str | None,
                     device: str | None) -> tuple[Path, str, str]:
    """The model folder, attention implementation and device, checked without loading
    anything heavy; raises TeacherError saying what to pass or install."""
    if not model_path:
        raise TeacherError("the gr00t teacher needs model_path=<absolute path of a local "
                           "GR00T-N1.5-3B folder> (a relative path would be taken as a hub id)")
    folder = Path(model_path).expanduser().resolve()  # absolute: never a hub download
    if not (folder / "experiment_cfg" / "metadata.json").is_file() or \
            not (folder / "config.json").is_file():
        raise TeacherError(f"{folder} is not a GR00T N1.5 model folder (no config.json and "
                           f"experiment_cfg/metadata.json): download nvidia/GR00T-N1.5-3B there "
                           f"and pass model_path=<that folder>")
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TeacherError(f"device={device} asked for, but torch sees no NVIDIA GPU: run on a "
                           f"GPU machine, or pass device=cpu (slow for the 3B model)")
    if attn_implementation in (None, "auto"):
        use_flash = flash_attn_available() and device.startswith("cuda")
        attn_implementation = "flash_attention_2" if use_flash else "sdpa"
    if attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise TeacherError(f"attn_implementation={attn_implementation} is not one of "
                           f"{', '.join(ATTENTION_IMPLEMENTATIONS)}")
    if attn_implementation == "flash_attention_2" and not flash_attn_available():
        raise TeacherError(f"attn_implementation=flash_attention_2 needs flash-attn, which is "
                           f"not installed: {FLASH_ATTN_HINT}")
    if attn_implementation == "flash_attention_2" and not device.startswith("cuda"):
        raise TeacherError("flash_attention_2 runs only on a GPU: pass attn_implementation=sdpa "
                           "for device=cpu")
    return folder, attn_implementation, device


def import_gr00t(attn_implementation: str) -> types.SimpleNamespace:
    """The gr00t names the teacher uses; a missing package becomes a TeacherError."""
    if attn_implementation != "flash_attention_2":
        without_flash_attn()
    try:
        from gr00t.data.dataset import ModalityConfig
        from gr00t.data.transform.base import ComposedModalityTransform
        from gr00t.model.backbone import eagle_backbone
        from gr00t.model.policy import Gr00tPolicy
        from gr00t.model.transforms import GR00TTransform
    except ImportError as exc:
        raise TeacherError(f"cannot import gr00t ({exc}): {INSTALL_HINT}") from exc
    return types.SimpleNamespace(ModalityConfig=ModalityConfig, Gr00tPolicy=Gr00tPolicy,
                                 ComposedModalityTransform=ComposedModalityTransform,
                                 GR00TTransform=GR00TTransform, eagle_backbone=eagle_backbone)


def check_options(model_path: str | None = None, attn_implementation: str | None = "auto",
                  device: str | None = "auto", **_other) -> None:
    """What the command line checks before it creates a run: the settings, then the package."""
    _, attention, _ = resolve_settings(model_path, attn_implementation, device)
    import_gr00t(attention)


def without_flash_attn() -> None:
    """Eagle's RADIO vision tower (not the SigLIP tower N1.5 uses) imports flash_attn at the
    top of its module, so without flash-attn the Eagle code cannot even be imported. Give it
    a placeholder whose functions say what to install if anything ever calls them."""
    if flash_attn_available() or "flash_attn" in sys.modules:
        return

    def missing(*_args, **_kwargs):
        raise TeacherError(f"this GR00T model calls flash-attn, which is not installed: "
                           f"{FLASH_ATTN_INSTALL}")

    names = {"flash_attn": [], "flash_attn.flash_attn_interface":
             ["flash_attn_varlen_qkvpacked_func", "flash_attn_unpadded_qkvpacked_func"],
             "flash_attn.bert_padding": ["pad_input", "unpad_input"]}
    for name, functions in names.items():
        module = types.ModuleType(name, "placeholder: flash-attn is not installed")
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        for function in functions:
            setattr(module, function, missing)
        sys.modules[name] = module


@contextmanager
def eagle_loading(eagle_backbone, implementation: str):
    """While GR00T builds its Eagle model: EagleBackbone reads its Eagle config asking for
    ``implementation`` instead of the shipped flash_attention_2; and without a GPU, the RADIO
    module's import-time GPU query (``torch.cuda.get_device_capability``, which raises on a
    machine without one) answers "no modern GPU" and its warning about that is silenced."""
    auto_config = eagle_backbone.AutoConfig

    class EagleConfig:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            config = auto_config.from_pretrained(*args, **kwargs)
            for each in (config, config.text_config, config.vision_config):
                each._attn_implementation = implementation
            return config

    device_capability = torch.cuda.get_device_capability
    eagle_backbone.AutoConfig = EagleConfig
    if not torch.cuda.is_available():
        torch.cuda.get_device_capability = lambda *_args, **_kwargs: (0, 0)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Flash attention is only supported")
            yield
    finally:
        eagle_backbone.AutoConfig = auto_config
        torch.cuda.get_device_capability = device_capability


def _set_attention(backbone: torch.nn.Module, implementation: str) -> None:
    """Every config under the backbone (Eagle, Qwen3, SigLIP: the Eagle model forces SigLIP
    to flash_attention_2 when it is built) reads ``implementation`` at forward time."""
    for module in backbone.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            config._attn_implementation = implementation


def _replace_lm_head(model: torch.nn.Module) -> bool:
    """Swap every ``language_model.lm_head`` under the backbone for an identity."""
    replaced = False
    for module in model.modules():
        language_model = getattr(module, "language_model", None)
        if isinstance(language_model, torch.nn.Module) and hasattr(language_model, "lm_head"):
            language_model.lm_head = torch.nn.Identity()
            replaced = True
    return replaced


def _backbone_width(backbone: torch.nn.Module) -> int:
    """The width of ``backbone_features``: the projection's, else the language model's."""
    projection = getattr(backbone, "eagle_linear", None)
    if isinstance(projection, torch.nn.Linear):
        return projection.out_features
    return backbone.eagle_model.config.text_config.hidden_size


class Gr00tTeacher:
    name = "gr00t"

    def __init__(self, model_path: str | None = None, embodiment: str = "gr1",
                 device: str | None = "auto", attn_implementation: str | None = "auto"):
        folder, attention, device = resolve_settings(model_path, attn_implementation, device)
        gr00t = import_gr00t(attention)
        if device == "cpu":
            warnings.warn("the gr00t teacher runs on the CPU: fine for a small model, but the "
                          "3B GR00T N1.5 takes many seconds per example there", stacklevel=2)

        self.model_path, self.embodiment, self.device = str(folder), embodiment, device
        self.attn_implementation = attention
        modality_config = {
            "video": gr00t.ModalityConfig(delta_indices=[0], modality_keys=["video"]),
            "state": gr00t.ModalityConfig(delta_indices=[0], modality_keys=["state"]),
            "action": gr00t.ModalityConfig(delta_indices=list(range(ACTION_HORIZON)),
                                           modality_keys=["action"]),
            "language": gr00t.ModalityConfig(delta_indices=[0], modality_keys=["annotation.0"]),
        }
        transform = gr00t.ComposedModalityTransform(transforms=[gr00t.GR00TTransform(
            state_horizon=1, action_horizon=ACTION_HORIZON,
            max_state_dim=STATE_DIM, max_action_dim=ACTION_DIM, training=False)])
        try:
            with eagle_loading(gr00t.eagle_backbone, attention):
                self.policy = gr00t.Gr00tPolicy(
                    model_path=self.model_path, embodiment_tag=embodiment,
                    modality_config=modality_config, modality_transform=transform, device=device)
        except Exception as exc:  # any loader failure; corrupt weights raise SafetensorError
            raise TeacherError(f"cannot load GR00T from {folder} with embodiment {embodiment!r}: "
                               f"{exc}") from exc
        backbone = self.policy.model.backbone
        _set_attention(backbone, attention)
        _replace_lm_head(backbone)
        self.feature_dim = _backbone_width(backbone)
        self.select_layer = backbone.select_layer

    def identity(self) -> dict:
        return {"name": self.name, "model_path": self.model_path, "model": "GR00T-N1.5",
                "embodiment": self.embodiment, "dim": self.feature_dim,
                "attn_implementation": self.attn_implementation,
                "features": f"backbone_features (Qwen3 layer {self.select_layer})"}

    def observation(self, views: Sequence[TeacherView]) -> dict:
        """The batched observation GR00TTransform expects, for views with equal frame counts."""
        video = np.stack([v.frames for v in views])[:, :, None]             # [B, T, 1, H, W, 3]
        return {
            "video": np.ascontiguousarray(video, dtype=np.uint8),
            "state": np.zeros((len(views), 1, STATE_DIM), dtype=np.float32),
            "annotation.0": np.array([v.prompt for v in views]),
        }

    @torch.inference_mode()
    def encode(self, views: Sequence[TeacherView]) -> tuple[torch.Tensor, torch.Tensor]:
        # One forward per frame count: a video batch must have one T.
        groups: dict[int, list[int]] = defaultdict(list)
        for i, view in enumerate(views):
            groups[view.frames.shape[0]].append(i)
        sequences: list[torch.Tensor | None] = [None] * len(views)
        for indices in groups.values():
            batch = self.policy.apply_transforms(self.observation([views[i] for i in indices]))
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                                enabled=str(self.device).startswith("cuda")):
                backbone_inputs, _ = self.policy.model.prepare_input(batch)
                out = self.policy.model.backbone(backbone_inputs)
            features, mask = out["backbone_features"], out["backbone_attention_mask"].bool()
            for row, i in enumerate(indices):
                sequences[i] = features[row][mask[row]].float().cpu()  # real tokens only
        return pad_token_sequences(sequences)
