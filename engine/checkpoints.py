"""Checkpoints: atomic writes, safe loads, database records, retention.

A checkpoint holds everything an exact resume needs (model, optimizer, scheduler,
scaler, RNG states, epoch and position in it, config). Files are written to a
temporary name, flushed and renamed, and loaded with ``weights_only=True`` so opening
one never runs code from it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from db.fsutil import atomic_write
from db.store import Checkpoint, Store, best_checkpoint_id
from engine.errors import UserError

class CheckpointError(UserError):
    pass


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def write_atomically(state: dict, path: Path) -> int:
    """Save ``state`` to ``path`` whole or not at all; returns the size in bytes."""
    return atomic_write(path, lambda handle: torch.save(state, handle))


def load_state(path: Path) -> dict:
    if not path.exists():
        raise CheckpointError(f"checkpoint file {path} is missing: choose another checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, or not a checkpoint at all
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}; choose another checkpoint") from exc


def save_checkpoint(store: Store, workspace: Path, run_id: int, run_dir: Path, state: dict,
                    step: int, epoch: float, metrics: dict, reason: str) -> Checkpoint:
    path = checkpoint_dir(run_dir) / f"step_{step:08d}.pt"
    store.check_owner(run_id)  # an engine that lost its run writes no file into it either
    size = write_atomically(state, path)
    relative = str(path.resolve().relative_to(workspace.resolve()))
    # A checkpoint of the same step (a stop right after a periodic save) replaces the old row.
    for old in store.checkpoints(run_id):
        if old.step == step:
            store.delete_checkpoint(old.id)
    checkpoint_id = store.add_checkpoint(run_id, step, epoch, relative, size, metrics, reason)
    return store.get_checkpoint(checkpoint_id)


def apply_retention(store: Store, workspace: Path, run_id: int, keep_last: int) -> list[int]:
    """Keep the last ``keep_last`` checkpoints and the best by validation pass@2;
    delete the rest (files and rows). Returns the deleted ids."""
    checkpoints = store.checkpoints(run_id)
    keep = {c.id for c in checkpoints[-keep_last:]} | {best_checkpoint_id(checkpoints)}
    deleted = []
    for c in checkpoints:
        if c.id not in keep:
            (workspace / c.path).unlink(missing_ok=True)
            store.delete_checkpoint(c.id)
            deleted.append(c.id)
    return deleted
