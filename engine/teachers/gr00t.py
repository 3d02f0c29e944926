"""The GR00T N1.5 backbone (Eagle 2.5 VLM cut at layer 12) as a frozen teacher.

Needs the Isaac-GR00T ``n1.5-release`` package, flash-attn, the model weights in a local
folder and a CUDA GPU; everything is imported only when this teacher is made, and every
missing piece becomes a TeacherError naming what to install or pass.
Facts used here: shared/reference/gr00t.md.

- The policy is loaded with the ``gr1`` embodiment: the shipped checkpoint has metadata
  for it, and the backbone reads only the ``eagle_*`` inputs, so the embodiment does not
  change the features (no hub-cache patching with dummy statistics).
- The observation is the 6-D batched form ``video [B, T, V=1, H, W, 3]`` uint8, which
  makes GR00TTransform run the Eagle chat template and processor for us.
- The backbone's attention mask is kept (its padding is on the left).
- The LM head is replaced by an identity: the features are hidden states, and the head
  would compute 151,680 logits per position for nothing.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from engine.teacher_view import TeacherView
from engine.teachers import TeacherError, pad_token_sequences

INSTALL_HINT = ("the gr00t teacher needs Isaac-GR00T n1.5-release installed with flash-attn "
                "(git clone -b n1.5-release https://github.com/NVIDIA/Isaac-GR00T; pip install -e "
                ".[base]; pip install --no-build-isolation flash-attn==2.7.1.post4), in a Python "
                "3.10 environment with transformers==4.51.3")
FEATURE_DIM = 2048
STATE_DIM = 64      # GR00TTransform pads the state to max_state_dim; zeros here
ACTION_DIM = 32
ACTION_HORIZON = 16


def _replace_lm_head(model: torch.nn.Module) -> bool:
    """Swap every ``language_model.lm_head`` under the backbone for an identity."""
    replaced = False
    for module in model.modules():
        language_model = getattr(module, "language_model", None)
        if isinstance(language_model, torch.nn.Module) and hasattr(language_model, "lm_head"):
            language_model.lm_head = torch.nn.Identity()
            replaced = True
    return replaced


class Gr00tTeacher:
    name = "gr00t"
    feature_dim = FEATURE_DIM

    def __init__(self, model_path: str | None = None, embodiment: str = "gr1",
                 device: str = "cuda", require_flash_attn: bool = True):
        if not model_path:
            raise TeacherError("the gr00t teacher needs model_path=<absolute path of a local "
                               "GR00T-N1.5-3B folder> (a relative path would be taken as a hub id)")
        folder = Path(model_path).expanduser().resolve()  # absolute: never a hub download
        if not (folder / "experiment_cfg" / "metadata.json").is_file():
            raise TeacherError(f"{folder} is not a GR00T N1.5 model folder (no "
                               f"experiment_cfg/metadata.json): download nvidia/GR00T-N1.5-3B "
                               f"there and pass model_path=<that folder>")
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise TeacherError("the gr00t teacher needs an NVIDIA GPU, and torch sees none: "
                               "run on a GPU machine, or use --teacher builtin / hf")
        if require_flash_attn:
            try:
                import flash_attn  # noqa: F401  (the Eagle code imports it unconditionally)
            except ImportError as exc:
                raise TeacherError(f"flash-attn is not installed: {INSTALL_HINT}") from exc
        try:
            from gr00t.data.dataset import ModalityConfig
            from gr00t.data.transform.base import ComposedModalityTransform
            from gr00t.model.policy import Gr00tPolicy
            from gr00t.model.transforms import GR00TTransform
        except ImportError as exc:
            raise TeacherError(f"cannot import gr00t ({exc}): {INSTALL_HINT}") from exc

        self.model_path, self.embodiment, self.device = str(folder), embodiment, device
        modality_config = {
            "video": ModalityConfig(delta_indices=[0], modality_keys=["video"]),
            "state": ModalityConfig(delta_indices=[0], modality_keys=["state"]),
            "action": ModalityConfig(delta_indices=list(range(ACTION_HORIZON)), modality_keys=["action"]),
            "language": ModalityConfig(delta_indices=[0], modality_keys=["annotation.0"]),
        }
        transform = ComposedModalityTransform(transforms=[GR00TTransform(
            state_horizon=1, action_horizon=ACTION_HORIZON,
            max_state_dim=STATE_DIM, max_action_dim=ACTION_DIM, training=False)])
        try:
            self.policy = Gr00tPolicy(model_path=self.model_path, embodiment_tag=embodiment,
                                      modality_config=modality_config,
                                      modality_transform=transform, device=device)
        except (OSError, ValueError) as exc:
            raise TeacherError(f"cannot load GR00T from {folder} with embodiment {embodiment!r}: "
                               f"{exc}") from exc
        _replace_lm_head(self.policy.model.backbone)

    def identity(self) -> dict:
        return {"name": self.name, "model_path": self.model_path, "model": "GR00T-N1.5",
                "embodiment": self.embodiment, "dim": self.feature_dim,
                "features": "backbone_features (Qwen3 layer 12)"}

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
