"""Teachers: frozen encoders that turn teacher views into token features.

Every teacher has ``name``, ``feature_dim``, ``identity()`` (a JSON-able dict recorded
in the feature store's manifest, so a store says exactly what made it) and
``encode(views) -> (features [B, L, D] float tensor, mask [B, L] bool, True = real)``.
Heavy imports (transformers, gr00t) happen only when that teacher is made.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from engine.errors import UserError
from engine.teacher_view import TeacherView

TEACHER_NAMES = ("builtin", "hf", "gr00t")


class TeacherError(UserError):
    """A teacher cannot be made or run for a reason the user can fix; the message says how."""


class Teacher(Protocol):
    name: str
    feature_dim: int

    def identity(self) -> dict: ...

    def encode(self, views: Sequence[TeacherView]) -> tuple[torch.Tensor, torch.Tensor]: ...


def pad_token_sequences(sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad [L_i, D] tensors to [B, L_max, D] with a mask (True = real token)."""
    longest = max(s.shape[0] for s in sequences)
    dim = sequences[0].shape[1]
    features = sequences[0].new_zeros((len(sequences), longest, dim))
    mask = torch.zeros((len(sequences), longest), dtype=torch.bool)
    for i, s in enumerate(sequences):
        features[i, :s.shape[0]] = s
        mask[i, :s.shape[0]] = True
    return features, mask


def check_teacher(name: str, **options) -> None:
    """The checks a teacher can make without loading its model (settings, model folder,
    installed packages): what `sage-engine check` and `extract` ask before a run exists,
    in seconds even for the 3B GR00T model. Raises TeacherError with what to do."""
    try:
        if name == "builtin":
            make_teacher(name, **options)   # no model to load: making it is the check
        elif name == "hf":
            from engine.teachers.hf import check_options
            check_options(**options)
        elif name == "gr00t":
            from engine.teachers.gr00t import check_options
            check_options(**options)
        else:
            raise TeacherError(f"unknown teacher {name!r}: use one of {', '.join(TEACHER_NAMES)}")
    except TypeError as exc:  # an option the teacher does not take
        raise TeacherError(f"bad option for the {name} teacher: {exc}") from exc


def make_teacher(name: str, **options) -> Teacher:
    """``builtin`` (no download), ``hf`` (model_path=<local HF folder>), or ``gr00t``
    (model_path=<absolute GR00T N1.5 folder>). Raises TeacherError with what to do."""
    if name == "builtin":
        from engine.teachers.builtin import BuiltinTeacher
        factory = BuiltinTeacher
    elif name == "hf":
        from engine.teachers.hf import HFTeacher
        factory = HFTeacher
    elif name == "gr00t":
        from engine.teachers.gr00t import Gr00tTeacher
        factory = Gr00tTeacher
    else:
        raise TeacherError(f"unknown teacher {name!r}: use one of {', '.join(TEACHER_NAMES)}")
    try:
        return factory(**options)
    except TypeError as exc:  # an option the teacher does not take
        raise TeacherError(f"bad option for the {name} teacher: {exc}") from exc
