"""The SAGE students: both map a collated batch to 30x30x11 output logits.

- "sage-seed": the original SAGE architecture. It reads teacher features, so it needs
  the teacher at inference too.
- "standalone": reads the grids themselves (tokens from ``engine.encoding``); the
  teacher's features only shape its hidden states through the distillation loss.

Both return ``StudentOutput``; ``hidden`` / ``hidden_mask`` are what distillation
compares with the teacher's features (through ``model.distill_projection``).

The students that read grids may carry a task embedding (after TRM/HRM's "puzzle
embedding"): a learned vector per training task, added to every input token. The
checkpoint's student spec (``student_spec``) names the task of each row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from engine.encoding import (CANVAS, NUM_CLASSES, NUM_SEGMENTS, QUERY_SEGMENT,
                             VOCAB_SIZE)

STUDENT_KINDS = ("sage-seed", "standalone", "recursive")


@dataclass(frozen=True)
class StudentConfig:
    d_model: int
    num_layers: int
    num_heads: int
    ffn_dim: int
    decoder_layers: int = 1                       # standalone: cross-attention blocks
    decoder_hidden: tuple[int, int] = (1024, 2048)  # sage-seed: MLP decoder widths
    max_positions: int = 6000                     # sage-seed: teacher tokens it accepts
    dropout: float = 0.0
    teacher_dim: int = 0                          # 0 = no distillation projection
    cycles: int = 3                               # recursive: supervised refinements of the answer
    inner_steps: int = 2                          # recursive: latent updates per refinement
    task_embedding: int = 0                       # standalone/recursive: task vector width, 0 = none


PRESETS = {
    # tiny: memorises 10 small ARC tasks (44 pairs) in about 500 AdamW steps at lr 3e-3 to 4e-3
    # on a 2-core CPU; attention over ~700 tokens dominates, so width stays at 64.
    "tiny": StudentConfig(d_model=64, num_layers=2, num_heads=4, ffn_dim=128,
                          decoder_layers=1, decoder_hidden=(256, 512)),
    "small": StudentConfig(d_model=256, num_layers=4, num_heads=8, ffn_dim=1024,
                           decoder_layers=2, decoder_hidden=(512, 1024)),
    "base": StudentConfig(d_model=384, num_layers=6, num_heads=8, ffn_dim=1536,
                          decoder_layers=2, decoder_hidden=(768, 1536), dropout=0.1),
    "seed": StudentConfig(d_model=512, num_layers=6, num_heads=8, ffn_dim=2048,
                          decoder_layers=2, decoder_hidden=(1024, 2048), dropout=0.1),
}


@dataclass
class StudentOutput:
    logits: torch.Tensor       # [B, 30, 30, 11]
    hidden: torch.Tensor       # [B, T, d_model]
    hidden_mask: torch.Tensor  # [B, T], True = real token
    # The recursive student's answers before the last refinement, each supervised too.
    earlier_logits: tuple[torch.Tensor, ...] = ()


def _encoder(config: StudentConfig) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        config.d_model, config.num_heads, config.ffn_dim, config.dropout,
        activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, config.num_layers, norm=nn.LayerNorm(config.d_model),
                                 enable_nested_tensor=False)


def _distill_projection(config: StudentConfig) -> nn.Linear | None:
    return nn.Linear(config.d_model, config.teacher_dim) if config.teacher_dim else None


class SeedStudent(nn.Module):
    """Teacher features -> Linear+LayerNorm+GELU -> learned positions -> pre-norm
    transformer -> masked mean pool -> MLP -> 30x30x11 logits (the original SAGE)."""

    def __init__(self, config: StudentConfig):
        super().__init__()
        if not config.teacher_dim:
            raise ValueError("the sage-seed student reads teacher features: pass teacher_dim > 0")
        self.config = config
        d = config.d_model
        self.input_projection = nn.Sequential(
            nn.Linear(config.teacher_dim, d), nn.LayerNorm(d), nn.GELU())
        self.positions = nn.Embedding(config.max_positions, d)
        self.encoder = _encoder(config)
        hidden1, hidden2 = config.decoder_hidden
        self.decoder = nn.Sequential(
            nn.Linear(d, hidden1), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(hidden1, hidden2), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(hidden2, CANVAS * CANVAS * NUM_CLASSES))
        self.distill_projection = _distill_projection(config)

    def forward(self, batch: dict) -> StudentOutput:
        if "teacher_features" not in batch:
            raise ValueError("the sage-seed student needs teacher_features in the batch")
        features = batch["teacher_features"].float()
        real = batch["teacher_mask"]
        length = features.shape[1]
        if length > self.config.max_positions:
            raise ValueError(f"{length} teacher tokens; this student accepts at most "
                             f"{self.config.max_positions}")
        x = self.input_projection(features) + self.positions.weight[:length]
        hidden = self.encoder(x, src_key_padding_mask=~real)
        weights = real.unsqueeze(-1).float()
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        logits = self.decoder(pooled).view(-1, CANVAS, CANVAS, NUM_CLASSES)
        return StudentOutput(logits, hidden, real)


class CrossAttentionBlock(nn.Module):
    """Pre-norm block: output cells attend to the context, then a feed-forward layer.
    No self-attention among the 900 output cells: it would cost 900^2 per example."""

    def __init__(self, config: StudentConfig):
        super().__init__()
        d = config.d_model
        self.norm_attention = nn.LayerNorm(d)
        self.attention = nn.MultiheadAttention(d, config.num_heads, dropout=config.dropout,
                                               batch_first=True)
        self.norm_ffn = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, config.ffn_dim), nn.GELU(),
                                 nn.Dropout(config.dropout), nn.Linear(config.ffn_dim, d))

    def forward(self, cells: torch.Tensor, context: torch.Tensor,
                context_padding: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(self.norm_attention(cells), context, context,
                                     key_padding_mask=context_padding, need_weights=False)
        cells = cells + attended
        return cells + self.ffn(self.norm_ffn(cells))


class StandaloneStudent(nn.Module):
    """Grid tokens (colour + row + column + segment embeddings) -> pre-norm transformer
    encoder -> 900 output-cell queries that cross-attend to the encoded query input ->
    30x30x11 logits.

    Output cell (r, c) starts from the same row/column embeddings as input cell (r, c),
    so "copy the cell at my position" is easy to learn. The output cells read only the
    query input's tokens (which have already attended to the demonstrations in the
    encoder): that keeps the 900-query cross-attention short on large tasks.
    """

    def __init__(self, config: StudentConfig, task_ids: Sequence[str] = ()):
        super().__init__()
        self.config = config
        d = config.d_model
        self.task_ids = list(task_ids) if config.task_embedding else []   # the task of each row
        if config.task_embedding:
            # Zeros at first (as in TRM): every task starts from the same input.
            self.task_vectors = nn.Parameter(torch.zeros(len(self.task_ids), config.task_embedding))
            self.task_projection = nn.Linear(config.task_embedding, d, bias=False)
        self.colour = nn.Embedding(VOCAB_SIZE, d)
        self.row = nn.Embedding(CANVAS, d)
        self.col = nn.Embedding(CANVAS, d)
        self.segment = nn.Embedding(NUM_SEGMENTS, d)
        self.encoder = _encoder(config)
        self.output_marker = nn.Parameter(torch.zeros(d))
        self.decoder = nn.ModuleList(CrossAttentionBlock(config)
                                     for _ in range(config.decoder_layers))
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, NUM_CLASSES))
        self.distill_projection = _distill_projection(config)
        cells = torch.arange(CANVAS * CANVAS)
        self.register_buffer("cell_rows", cells // CANVAS, persistent=False)
        self.register_buffer("cell_cols", cells % CANVAS, persistent=False)

    def encode(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """(hidden states, the query input's encoded tokens, their padding, padding)."""
        padding = batch["pad_mask"]
        x = (self.colour(batch["tokens"]) + self.row(batch["rows"])
             + self.col(batch["cols"]) + self.segment(batch["segments"]))
        if self.config.task_embedding:
            x = x + self.task_inputs(batch, len(x)).unsqueeze(1)
        hidden = self.encoder(x, src_key_padding_mask=padding)
        # build_example puts the query input first, so its tokens are a prefix.
        is_query = (batch["segments"] == QUERY_SEGMENT) & ~padding
        query_length = int(is_query.sum(1).max())
        return hidden, hidden[:, :query_length], ~is_query[:, :query_length], padding

    def task_inputs(self, batch: dict, batch_size: int) -> torch.Tensor:
        """[B, d_model]: each query's task vector, projected. A task without a row (not
        trained on, or a batch that names no tasks) gets the mean of the learned rows."""
        rows = {task_id: row for row, task_id in enumerate(self.task_ids)}
        unseen = len(rows)
        names = batch.get("task_ids") or [None] * batch_size
        index = torch.tensor([rows.get(name, unseen) for name in names], device=self.task_vectors.device)
        mean = (self.task_vectors.mean(0, keepdim=True) if unseen
                else self.task_vectors.new_zeros(1, self.config.task_embedding))
        return self.task_projection(torch.cat([self.task_vectors, mean])[index])

    def add_task(self, task_id: str) -> None:
        """A row of its own for a task not trained on, starting at the mean of the learned
        rows; test-time training then trains it with the rest of the student."""
        if not self.config.task_embedding:
            return
        with torch.no_grad():
            start = (self.task_vectors.mean(0, keepdim=True) if self.task_ids
                     else self.task_vectors.new_zeros(1, self.config.task_embedding))
            self.task_vectors = nn.Parameter(torch.cat([self.task_vectors, start]))
        self.task_ids.append(task_id)

    def output_cells(self, batch_size: int) -> torch.Tensor:
        cells = (self.row(self.cell_rows) + self.col(self.cell_cols) + self.output_marker)
        return cells.unsqueeze(0).expand(batch_size, -1, -1)

    def forward(self, batch: dict) -> StudentOutput:
        hidden, context, context_padding, padding = self.encode(batch)
        cells = self.output_cells(hidden.shape[0])
        for block in self.decoder:
            cells = block(cells, context, context_padding)
        logits = self.head(cells).view(-1, CANVAS, CANVAS, NUM_CLASSES)
        return StudentOutput(logits, hidden, ~padding)


class RecursiveStudent(StandaloneStudent):
    """After TRM: one small block, applied again and again, refines a latent state ``z``
    and an answer ``y`` for every output cell (both read the encoded query through
    cross-attention). Each of ``cycles`` refinements updates z ``inner_steps`` times from
    (y, z), then y from z, and decodes an answer; every answer is supervised (deep
    supervision), so the network learns to improve its own previous answer."""

    def __init__(self, config: StudentConfig, task_ids: Sequence[str] = ()):
        super().__init__(config, task_ids)
        d = config.d_model
        self.latent_block = CrossAttentionBlock(config)
        self.answer_update = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))
        self.latent_init = nn.Parameter(torch.zeros(d))

    def forward(self, batch: dict) -> StudentOutput:
        hidden, context, context_padding, padding = self.encode(batch)
        answer = self.output_cells(hidden.shape[0])
        latent = self.latent_init.expand_as(answer)
        answers = []
        for _ in range(self.config.cycles):
            for _ in range(self.config.inner_steps):
                latent = self.latent_block(latent + answer, context, context_padding)
            answer = answer + self.answer_update(latent)
            answers.append(self.head(answer).view(-1, CANVAS, CANVAS, NUM_CLASSES))
        return StudentOutput(answers[-1], hidden, ~padding, tuple(answers[:-1]))


def build_student(kind: str, preset: str, teacher_dim: int = 0, task_ids: Sequence[str] = (),
                  **overrides) -> nn.Module:
    """A student of ``kind`` (see STUDENT_KINDS) sized by ``preset``; any StudentConfig
    field can be overridden. teacher_dim > 0 adds the distillation projection (and is
    required by sage-seed, whose input it is). With ``task_embedding=W``, ``task_ids``
    are the tasks that get a learned row each."""
    if kind not in STUDENT_KINDS:
        raise ValueError(f"unknown student kind {kind!r}: use one of {', '.join(STUDENT_KINDS)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown student preset {preset!r}: use one of {', '.join(PRESETS)}")
    try:
        config = replace(PRESETS[preset], teacher_dim=teacher_dim, **overrides)
    except TypeError as exc:
        raise ValueError(f"bad student override: {exc}") from None
    if kind == "sage-seed":
        if config.task_embedding:
            raise ValueError("the sage-seed student has no task embedding")
        return SeedStudent(config)
    classes = {"standalone": StandaloneStudent, "recursive": RecursiveStudent}
    return classes[kind](config, task_ids)


def student_spec(model: nn.Module, kind: str, preset: str) -> dict:
    """What a checkpoint records to rebuild the student: ``build_from_spec`` reads it."""
    spec = {"kind": kind, "preset": preset, "teacher_dim": model.config.teacher_dim}
    if model.config.task_embedding:
        spec.update(task_embedding=model.config.task_embedding, task_ids=list(model.task_ids))
    return spec


def build_from_spec(spec: dict) -> nn.Module:
    """The student a checkpoint's spec describes (one saved before task embeddings too)."""
    return build_student(spec["kind"], spec["preset"], teacher_dim=spec.get("teacher_dim", 0),
                         task_ids=spec.get("task_ids", ()), task_embedding=spec.get("task_embedding", 0))


def count_parameters(model: nn.Module, include_distillation: bool = False) -> int:
    """Parameters the model uses at inference; the distillation projection, used only
    in training, is left out unless asked for."""
    return sum(p.numel() for name, p in model.named_parameters()
               if include_distillation or not name.startswith("distill_projection."))
