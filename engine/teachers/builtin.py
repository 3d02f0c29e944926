"""A small randomly initialised image encoder that needs no download.

It stands in for a real vision teacher so that extraction, training and the tests run
on a laptop CPU: deterministic for a seed, tens of milliseconds per view. Each frame is
average-pooled to one value per ``pool_px`` pixels (one per ARC cell at the default
9 px) and cut into ``patch`` x ``patch`` patches; each patch is embedded by a fixed
random projection, position and frame-index encodings are added, and a GELU + linear
layer and a LayerNorm follow. 30x30 cells with patch 3 give 100 tokens per frame.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from engine.teacher_view import TeacherView
from engine.teachers import TeacherError, pad_token_sequences

BUILTIN_VERSION = 1


def sinusoidal(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """[N] integer positions -> [N, dim] fixed sine/cosine encodings."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = positions.float()[:, None] * freqs[None, :]
    enc = torch.cat([angles.sin(), angles.cos()], dim=1)
    return nn.functional.pad(enc, (0, dim - enc.shape[1]))


class BuiltinTeacher:
    name = "builtin"

    def __init__(self, dim: int = 256, seed: int = 0, pool_px: int = 9, patch: int = 3,
                 device: str = "cpu"):
        dim, seed, pool_px, patch = int(dim), int(seed), int(pool_px), int(patch)
        if dim < 8 or pool_px < 1 or patch < 1:
            raise TeacherError("builtin teacher needs dim >= 8, pool_px >= 1, patch >= 1")
        self.feature_dim = dim
        self.seed, self.pool_px, self.patch = seed, pool_px, patch
        self.device = torch.device(device)
        generator = torch.Generator().manual_seed(seed)
        # Weights drawn from the seeded generator, never from the global RNG.
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(dim, dim))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        with torch.no_grad():
            for module in (self.patch_embed, self.mlp[1]):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / math.sqrt(fan_in))
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.02)
        self.network = nn.ModuleList([self.patch_embed, self.mlp]).to(self.device).eval()

    def identity(self) -> dict:
        return {"name": self.name, "version": BUILTIN_VERSION, "dim": self.feature_dim,
                "seed": self.seed, "pool_px": self.pool_px, "patch": self.patch}

    def _position_encoding(self, count: int) -> torch.Tensor:
        return sinusoidal(torch.arange(count), self.feature_dim).to(self.device)

    def _pool(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> mean of each pool_px square, in [-1, 1], as [N, 3, h, w].
        Pooled in the channels-last layout the frames come in (a permute first is slow)."""
        n, height, width, _ = frames.shape
        h, w, p = height // self.pool_px, width // self.pool_px, self.pool_px
        x = frames[:, :h * p, :w * p].reshape(n, h, p, w, p, 3).float().mean(dim=(2, 4))
        return (x * (2.0 / 255.0) - 1.0).permute(0, 3, 1, 2).contiguous()

    @torch.inference_mode()
    def encode(self, views: Sequence[TeacherView]) -> tuple[torch.Tensor, torch.Tensor]:
        # All frames of all views in one convolution, then split back per view.
        frames = np.concatenate([v.frames for v in views])                    # [N, H, W, 3]
        x = self._pool(torch.from_numpy(frames).to(self.device))                # [N, 3, h, w]
        tokens = self.patch_embed(x)                                           # [N, D, h, w]
        per_frame = tokens.shape[2] * tokens.shape[3]
        tokens = tokens.flatten(2).transpose(1, 2)                             # [N, P, D]
        frame_numbers = torch.cat([torch.arange(v.frames.shape[0]) for v in views])
        tokens = (tokens
                  + self._position_encoding(per_frame)[None]
                  + sinusoidal(frame_numbers * 1000 + 7, self.feature_dim).to(self.device)[:, None])
        tokens = self.norm(self.mlp(tokens))                                   # [N, P, D]
        sequences, start = [], 0
        for view in views:
            t = view.frames.shape[0]
            sequences.append(tokens[start:start + t].reshape(t * per_frame, -1).cpu())
            start += t
        return pad_token_sequences(sequences)
