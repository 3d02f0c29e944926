"""Any local Hugging Face vision encoder as a teacher (SigLIP, CLIP, DINOv2, ...).

The model and its image processor are loaded with ``from_pretrained`` from a local
folder only (no hub download). Every frame of a view is encoded on its own; the view's
tokens are the frames' patch tokens from ``layer`` (a hidden-state index, -1 = last),
concatenated in frame order. Works with transformers 4.51 and 5.x.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from engine.teacher_view import TeacherView
from engine.teachers import TeacherError, pad_token_sequences

INSTALL_HINT = "the hf teacher needs transformers and pillow: pip install 'sage-tui[hf]'"


def _resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise TeacherError(f"device {device!r} asked for, but torch sees no CUDA GPU: pass device=cpu")
    return torch.device(device)


def check_options(model_path: str | None = None, layer: int = -1, device: str | None = "auto",
                  dtype: str = "float32") -> Path:
    """The model folder, checked without loading the model (the dashboard's settings check
    must answer in seconds); raises TeacherError saying what to pass or install."""
    if not model_path:
        raise TeacherError("the hf teacher needs model_path=<local folder with a Hugging Face "
                           "vision model and its preprocessor_config.json>")
    folder = Path(model_path).expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise TeacherError(f"{folder} is not a Hugging Face model folder (no config.json): "
                           f"pass model_path=<folder saved with save_pretrained>")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise TeacherError(f"{folder} has no weights (*.safetensors or *.bin): save the model "
                           f"there with save_pretrained")
    if importlib.util.find_spec("transformers") is None:
        raise TeacherError(INSTALL_HINT)
    if dtype not in ("float32", "bfloat16", "float16"):
        raise TeacherError(f"dtype must be float32, bfloat16 or float16, not {dtype!r}")
    try:
        int(layer)
    except (TypeError, ValueError):
        raise TeacherError(f"layer must be a hidden-state index (-1 = last), not {layer!r}") from None
    _resolve_device(device)
    return folder


class HFTeacher:
    name = "hf"

    def __init__(self, model_path: str | None = None, layer: int = -1, device: str | None = "auto",
                 dtype: str = "float32"):
        folder = check_options(model_path, layer, device, dtype)
        try:
            from transformers import AutoImageProcessor, AutoModel
        except ImportError as exc:
            raise TeacherError(INSTALL_HINT) from exc
        self.device = _resolve_device(device)
        self.layer = int(layer)
        self.model_path = str(folder)
        self.dtype = dtype
        try:
            self.processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
            model = AutoModel.from_pretrained(str(folder), local_files_only=True,
                                              torch_dtype=getattr(torch, dtype))
        except Exception as exc:  # any loader failure; corrupt weights raise SafetensorError
            raise TeacherError(f"cannot load a vision model from {folder}: {exc}") from exc
        # Dual-tower models (SiglipModel, CLIPModel) keep the image side in .vision_model;
        # vision-only models (SiglipVisionModel) answer to pixel_values directly.
        self.encoder = model.vision_model if hasattr(model, "text_model") else model
        config = getattr(model.config, "vision_config", model.config)
        self.feature_dim = int(config.hidden_size)
        self.model_type = str(model.config.model_type)
        self.encoder.to(self.device).eval()

    def identity(self) -> dict:
        return {"name": self.name, "model_path": self.model_path, "model_type": self.model_type,
                "layer": self.layer, "dim": self.feature_dim, "dtype": self.dtype}

    @torch.inference_mode()
    def encode(self, views: Sequence[TeacherView]) -> tuple[torch.Tensor, torch.Tensor]:
        images = [frame for view in views for frame in view.frames]          # each [H, W, 3]
        pixels = self.processor(images=[np.ascontiguousarray(i) for i in images],
                                return_tensors="pt")["pixel_values"]
        out = self.encoder(pixel_values=pixels.to(self.device, getattr(torch, self.dtype)),
                           output_hidden_states=True)
        hidden = out.hidden_states
        if not -len(hidden) <= self.layer < len(hidden):
            raise TeacherError(f"layer {self.layer} does not exist: this model has hidden states "
                               f"0..{len(hidden) - 1}")
        tokens = hidden[self.layer].float().cpu()                            # [N, P, D]
        sequences, start = [], 0
        for view in views:
            t = view.frames.shape[0]
            sequences.append(tokens[start:start + t].reshape(-1, self.feature_dim))
            start += t
        return pad_token_sequences(sequences)
