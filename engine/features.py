"""The feature store: teacher features written once, read many times at memory speed.

Layout of a store folder (by default ``<workspace>/features/<name>/``)::

    manifest.json                   what made the features (teacher, dataset, view, dtype, ...)
    shard-<i>-of-<n>.bin            raw rows [rows, feature_dim], float16 or bfloat16
    shard-<i>-of-<n>.index.json     one entry per example: example_id, task_id, kind,
                                    query_index, offset, length (rows), crc32 of its bytes

One writer owns one shard (``--shard i/n``), so processes never share a file; a reader
merges every shard's index and sees one store. A batch is committed by appending its
rows to the .bin (flushed and fsynced) and then replacing the index (temporary name,
fsync, rename): the index is the commit point, so an interruption loses at most the
batch in flight, whose stray bytes are cut off when the shard is next opened.

Reading one example is a zero-copy view of the memory-mapped .bin; a padded batch is
assembled with one copy per example into the output array.
"""

from __future__ import annotations

import json
import os
import time
import warnings
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from db.fsutil import atomic_write
from engine.errors import UserError

FORMAT = "sage-features/1"
MANIFEST = "manifest.json"
# Stored dtype -> (numpy dtype of the raw rows, torch dtype handed to consumers).
# numpy has no bfloat16: its rows are kept as uint16 bit patterns.
DTYPES = {"float16": (np.float16, torch.float16), "bfloat16": (np.uint16, torch.bfloat16)}
FLOAT16_MAX = 65504.0
# Manifest fields that are facts about one writer's moment, not about the features.
NOT_COMPARED = ("created_at",)


class FeatureStoreError(UserError):
    """A store problem a user can fix; the message says how."""


class FeatureMismatch(FeatureStoreError):
    """The store was made with other settings than the ones a consumer expects."""


class StoreCorrupt(FeatureStoreError):
    """Some examples' rows are missing or damaged; ``example_ids`` names them."""

    def __init__(self, message: str, example_ids: list[str]):
        super().__init__(message)
        self.example_ids = example_ids


@dataclass(frozen=True)
class IndexEntry:
    example_id: str
    task_id: str
    kind: str          # "train" / "test": which pair of the task was the query
    query_index: int
    offset: int        # first row in the shard's .bin
    length: int        # rows (tokens after pooling)
    crc32: int
    shard: str = ""    # "i-of-n", filled in when read


def store_folder(workspace: str | os.PathLike, name: str) -> Path:
    return Path(workspace) / "features" / name


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n), 0 <= i < n. None means the whole dataset, (0, 1)."""
    if shard is None:
        return 0, 1
    if isinstance(shard, tuple):
        index, count = shard
    else:
        try:
            index, count = (int(part) for part in str(shard).split("/"))
        except ValueError:
            raise FeatureStoreError(f"--shard must look like i/n (e.g. 0/4), not {shard!r}") from None
    if not 0 <= index < count:
        raise FeatureStoreError(f"--shard {index}/{count}: need 0 <= i < n")
    return index, count


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def write_json_atomic(path: Path, data: object) -> None:
    """Never half a file (db/fsutil.py's atomic_write: temporary name, fsync, rename)."""
    atomic_write(path, lambda handle: handle.write(json.dumps(data, indent=1).encode()))


def pool_tokens(tokens: torch.Tensor, pool: int) -> torch.Tensor:
    """Mean of each run of ``pool`` consecutive tokens ([L, D] -> [ceil(L/pool), D])."""
    if pool <= 1:
        return tokens
    length, dim = tokens.shape
    groups = -(-length // pool)
    padded = torch.zeros(groups * pool, dim, dtype=tokens.dtype)
    padded[:length] = tokens
    counts = torch.full((groups, 1), float(pool))
    counts[-1] = length - (groups - 1) * pool
    return padded.view(groups, pool, dim).sum(1) / counts


class FeatureStore:
    """A store folder, opened for reading (``open``) or for writing one shard (``create``)."""

    def __init__(self, folder: Path, manifest: dict, writer_shard: tuple[int, int] | None = None):
        self.folder = folder
        self.manifest = manifest
        self.feature_dim = int(manifest["feature_dim"])
        self.dtype = str(manifest["dtype"])
        self.np_dtype, self.torch_dtype = DTYPES[self.dtype]
        self.row_bytes = self.feature_dim * np.dtype(self.np_dtype).itemsize
        self.writer_shard = writer_shard
        self._entries: dict[str, IndexEntry] = {}
        self._shard_entries: dict[str, list[IndexEntry]] = {}
        self._maps: dict[str, np.ndarray] = {}
        self._load_indexes()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, folder: str | os.PathLike) -> "FeatureStore":
        folder = Path(folder).expanduser()
        path = folder / MANIFEST
        if not path.is_file():
            raise FeatureStoreError(f"no feature store at {folder} (no {MANIFEST}): "
                                    f"extract one with `sage-engine extract`")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise FeatureStoreError(f"{path} is unreadable ({exc}): delete the store folder "
                                    f"and extract again") from exc
        if manifest.get("format") != FORMAT:
            raise FeatureStoreError(f"{folder} is a {manifest.get('format')!r} store; this "
                                    f"version reads {FORMAT!r}: extract again")
        return cls(folder, manifest)

    @classmethod
    def create(cls, folder: str | os.PathLike, manifest: dict,
               shard: str | tuple[int, int] | None = None) -> "FeatureStore":
        """Open ``folder`` for writing one shard, creating the store if needed. An
        existing store must have been made with the same settings (else FeatureMismatch)."""
        folder = Path(folder).expanduser()
        if manifest.get("dtype") not in DTYPES:
            raise FeatureStoreError(f"dtype must be one of {', '.join(DTYPES)}, "
                                    f"not {manifest.get('dtype')!r}")
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {"format": FORMAT, **manifest}
        if (folder / MANIFEST).is_file():
            existing = cls.open(folder)
            existing.check_manifest(manifest)
            manifest = existing.manifest
        else:
            manifest = {**manifest, "created_at": time.time()}
            write_json_atomic(folder / MANIFEST, manifest)
        store = cls(folder, manifest, writer_shard=parse_shard(shard))
        store._recover_writer_shard()
        return store

    # ----------------------------------------------------------------- manifest
    def check_manifest(self, expected: dict) -> None:
        """Raise FeatureMismatch naming every field of ``expected`` that differs here."""
        have, want = _flatten(self.manifest), _flatten(expected)
        differences = [f"{key}: store has {have.get(key, '(missing)')!r}, expected {value!r}"
                       for key, value in want.items()
                       if key not in NOT_COMPARED and have.get(key) != value]
        if differences:
            raise FeatureMismatch(
                f"feature store {self.folder} was made with other settings:\n  "
                + "\n  ".join(differences)
                + "\nuse a store made with these settings (another --store name), "
                  "or delete this folder to extract it again")

    def summary(self) -> dict:
        """Live figures from the indexes: examples, tokens, bytes."""
        lengths = [e.length for e in self._entries.values()]
        return {"examples": len(lengths), "tokens_total": int(sum(lengths)),
                "tokens_max": max(lengths, default=0),
                "tokens_mean": float(np.mean(lengths)) if lengths else 0.0,
                "shards": sorted(self._shard_entries)}

    # ------------------------------------------------------------------- index
    @staticmethod
    def shard_key(shard: tuple[int, int]) -> str:
        return f"{shard[0]}-of-{shard[1]}"

    def _bin_path(self, key: str) -> Path:
        return self.folder / f"shard-{key}.bin"

    def _index_path(self, key: str) -> Path:
        return self.folder / f"shard-{key}.index.json"

    def _load_indexes(self) -> None:
        self._entries.clear()
        self._shard_entries.clear()
        self._maps.clear()
        for path in sorted(self.folder.glob("shard-*.index.json")):
            key = path.name[len("shard-"):-len(".index.json")]
            try:
                data = json.loads(path.read_text())
                entries = [IndexEntry(**e, shard=key) for e in data["entries"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise FeatureStoreError(f"index {path} is unreadable ({exc}): delete it and its "
                                        f".bin, then extract that shard again") from exc
            self._shard_entries[key] = entries
            for entry in entries:
                if entry.example_id in self._entries:
                    raise FeatureStoreError(
                        f"example {entry.example_id} is stored twice (shards "
                        f"{self._entries[entry.example_id].shard} and {key}): delete one shard's "
                        f".bin and .index.json files")
                self._entries[entry.example_id] = entry

    def refresh(self) -> None:
        """Read the indexes again (after another process appended)."""
        self._load_indexes()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, example_id: str) -> bool:
        return example_id in self._entries

    @property
    def example_ids(self) -> list[str]:
        return list(self._entries)

    @property
    def shards(self) -> list[str]:
        return sorted(self._shard_entries)

    def entry(self, example_id: str) -> IndexEntry:
        try:
            return self._entries[example_id]
        except KeyError:
            raise KeyError(f"example {example_id} is not in the feature store {self.folder}") from None

    def entries(self) -> list[IndexEntry]:
        return list(self._entries.values())

    # ------------------------------------------------------------------ reading
    def _rows(self, key: str) -> np.ndarray:
        rows = self._maps.get(key)
        if rows is None:
            path = self._bin_path(key)
            count = path.stat().st_size // self.row_bytes if path.exists() else 0
            if count == 0:
                rows = np.zeros((0, self.feature_dim), dtype=self.np_dtype)
            else:
                rows = np.memmap(path, dtype=self.np_dtype, mode="r", shape=(count, self.feature_dim))
            self._maps[key] = rows
        return rows

    def get(self, example_id: str) -> np.ndarray:
        """[L, D] zero-copy view of one example (uint16 bit patterns for a bfloat16 store;
        use ``get_tensor`` for a torch tensor of the right dtype)."""
        entry = self.entry(example_id)
        rows = self._rows(entry.shard)
        if entry.offset + entry.length > rows.shape[0]:
            raise StoreCorrupt(f"shard {entry.shard} of {self.folder} is truncated: example "
                               f"{example_id} is past its end; re-extract it "
                               f"(run the same `sage-engine extract` again)", [example_id])
        return rows[entry.offset:entry.offset + entry.length]

    def get_tensor(self, example_id: str) -> torch.Tensor:
        """[L, D] torch tensor sharing memory with the mapped file (read-only: do not write)."""
        view = np.asarray(self.get(example_id))
        if not view.size:
            return torch.zeros(view.shape, dtype=self.torch_dtype)
        with warnings.catch_warnings():  # the mapping is read-only, as it should be
            warnings.simplefilter("ignore", UserWarning)
            tensor = torch.frombuffer(view.data, dtype=self.torch_dtype)
        return tensor.view(view.shape)

    def batch(self, example_ids: Sequence[str],
              out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``(features [B, L_max, D], mask [B, L_max] True = real)``: one copy.

        ``out``, a tensor of at least [B, L_max, D] in the store's dtype, is filled and a
        view of it returned, so a loader can reuse its buffers instead of allocating (and
        page-faulting) a fresh one per batch."""
        views = [self.get(i) for i in example_ids]
        longest = max((v.shape[0] for v in views), default=0)
        shape = (len(views), longest, self.feature_dim)
        if out is None:
            array = np.zeros(shape, dtype=self.np_dtype)
            features = torch.from_numpy(array)
            if self.torch_dtype == torch.bfloat16:
                features = features.view(torch.int16).view(torch.bfloat16)
        else:
            if out.dtype != self.torch_dtype or out.shape[0] < shape[0] or out.shape[1] < longest \
                    or out.shape[2] != self.feature_dim:
                raise ValueError(f"out must be {self.torch_dtype} of at least {list(shape)}, "
                                 f"not {out.dtype} {list(out.shape)}")
            features = out[:shape[0], :longest]
            raw = features.view(torch.int16) if self.torch_dtype == torch.bfloat16 else features
            array = raw.numpy().view(self.np_dtype)
        mask = np.zeros(shape[:2], dtype=bool)
        # torch's copy runs on every core, numpy's on one: about twice the bandwidth here.
        target = torch.from_numpy(array)
        for row, view in enumerate(views):
            with warnings.catch_warnings():  # the mapping is read-only, and is only read
                warnings.simplefilter("ignore", UserWarning)
                target[row, :view.shape[0]].copy_(torch.from_numpy(view))
            if out is not None:
                target[row, view.shape[0]:] = 0
            mask[row, :view.shape[0]] = True
        return features, torch.from_numpy(mask)

    def verify(self, checksums: bool = True, shards: Iterable[str] | None = None) -> int:
        """Check every example's rows are present (sizes) and, with ``checksums``, intact
        (crc32). Returns the number checked; raises StoreCorrupt naming the bad ones."""
        bad: list[str] = []
        reasons: list[str] = []
        keys = list(shards) if shards is not None else self.shards
        self._maps.clear()  # see the files as they are now
        checked = 0
        for key in keys:
            rows = self._rows(key)
            for entry in self._shard_entries.get(key, []):
                checked += 1
                if entry.offset + entry.length > rows.shape[0]:
                    bad.append(entry.example_id)
                    reasons.append(f"{entry.example_id} (shard {key} truncated)")
                elif checksums and zlib.crc32(rows[entry.offset:entry.offset + entry.length]) != entry.crc32:
                    bad.append(entry.example_id)
                    reasons.append(f"{entry.example_id} (checksum mismatch in shard {key})")
        if bad:
            shown = ", ".join(reasons[:20]) + (f" and {len(reasons) - 20} more" if len(reasons) > 20 else "")
            raise StoreCorrupt(f"feature store {self.folder}: {len(bad)} example(s) damaged: {shown}. "
                               f"Re-extract them: run the same `sage-engine extract` again "
                               f"(it drops damaged examples and extracts them anew).", bad)
        return checked

    # ------------------------------------------------------------------ writing
    def _writer_key(self) -> str:
        if self.writer_shard is None:
            raise FeatureStoreError("this store was opened for reading: use FeatureStore.create to write")
        return self.shard_key(self.writer_shard)

    def _committed_rows(self, key: str) -> int:
        return max((e.offset + e.length for e in self._shard_entries.get(key, [])), default=0)

    def _recover_writer_shard(self) -> None:
        """Cut off rows past the last committed example (a batch interrupted mid-write)."""
        key = self._writer_key()
        path = self._bin_path(key)
        committed = self._committed_rows(key) * self.row_bytes
        if path.exists() and path.stat().st_size > committed:
            with open(path, "r+b") as f:
                f.truncate(committed)
                os.fsync(f.fileno())
        self._maps.pop(key, None)

    def _write_index(self, key: str, entries: list[IndexEntry]) -> None:
        write_json_atomic(self._index_path(key), {
            "format": FORMAT, "shard": key, "dtype": self.dtype, "feature_dim": self.feature_dim,
            "entries": [{k: v for k, v in asdict(e).items() if k != "shard"} for e in entries]})

    def drop(self, example_ids: Iterable[str]) -> int:
        """Forget examples of the writer's shard (damaged ones), so they are extracted again.
        Their rows stay in the .bin as dead space."""
        key = self._writer_key()
        doomed = set(example_ids)
        kept = [e for e in self._shard_entries.get(key, []) if e.example_id not in doomed]
        removed = len(self._shard_entries.get(key, [])) - len(kept)
        if removed:
            self._write_index(key, kept)
            self._load_indexes()
            self._recover_writer_shard()
        return removed

    def append(self, keys: Sequence[tuple[str, str, str, int]], features: torch.Tensor,
               mask: torch.Tensor, pool: int = 1) -> int:
        """Store a batch: ``keys[i] = (example_id, task_id, kind, query_index)`` for row i of
        ``features [B, L, D]`` / ``mask [B, L]``. All or nothing: on an error the shard is
        left as it was before the call. Returns the rows written."""
        key = self._writer_key()
        if features.shape[-1] != self.feature_dim:
            raise FeatureStoreError(f"features have dim {features.shape[-1]}, the store {self.feature_dim}")
        start = self._committed_rows(key)
        blobs, new_entries, offset = [], [], start
        for (example_id, task_id, kind, index), row_features, row_mask in zip(keys, features, mask):
            if example_id in self._entries:
                raise FeatureStoreError(f"example {example_id} is already stored")
            tokens = pool_tokens(row_features[row_mask.bool()].float().cpu(), pool)
            blob = self._encode_rows(tokens)
            blobs.append(blob)
            new_entries.append(IndexEntry(example_id, task_id, kind, int(index), offset,
                                          tokens.shape[0], zlib.crc32(blob), key))
            offset += tokens.shape[0]
        # Unbuffered writes at explicit positions: after a failure nothing is left in a
        # buffer to be flushed later, and the truncate below restores the committed size.
        fd = os.open(self._bin_path(key), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            position = start * self.row_bytes
            for blob in blobs:
                view = memoryview(blob)
                while view:
                    written = os.pwrite(fd, view, position)
                    view, position = view[written:], position + written
            os.fsync(fd)
            self._write_index(key, self._shard_entries.get(key, []) + new_entries)
        except BaseException:
            # Leave the shard exactly as committed (a full disk, an interrupt).
            os.ftruncate(fd, start * self.row_bytes)
            raise
        finally:
            os.close(fd)
        self._shard_entries.setdefault(key, []).extend(new_entries)
        for entry in new_entries:
            self._entries[entry.example_id] = entry
        self._maps.pop(key, None)
        return offset - start

    def _encode_rows(self, tokens: torch.Tensor) -> bytes:
        if self.dtype == "float16":
            return tokens.clamp(-FLOAT16_MAX, FLOAT16_MAX).to(torch.float16).numpy().tobytes()
        return tokens.to(torch.bfloat16).view(torch.int16).numpy().tobytes()


def open_store_for_training(workspace: str | os.PathLike, name_or_path: str, dataset) -> "FeatureStore":
    """The store a training or evaluation run reads: by folder path or by name in the
    workspace. Refused, with what differs, when it was extracted from other tasks."""
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        folder = store_folder(workspace, name_or_path)
    store = FeatureStore.open(folder)
    made_from = store.manifest.get("dataset", {})
    if made_from.get("fingerprint") != dataset.fingerprint:
        raise FeatureMismatch(
            f"feature store {folder} was extracted from {made_from.get('name')!r} "
            f"(fingerprint {made_from.get('fingerprint')}), but this run reads {dataset.name!r} "
            f"(fingerprint {dataset.fingerprint}): extract features for this dataset first "
            f"(sage-engine extract --dataset {dataset.name})")
    return store
