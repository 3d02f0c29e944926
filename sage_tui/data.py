"""Reads for the dashboard. Called only from thread workers, each with its own
read-only connection; results are plain objects handed to the event loop in messages.
Nothing here imports Textual."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from db import sysinfo
from db.processes import HOST, effective_status, process_matches
from db.store import BEST_METRIC, Event, Run, SeriesChunk, Store

BEST_KEY = BEST_METRIC
# Live refreshes append the rows after the held cursor; a series holding more than this
# many rows is read again downsampled instead (db's block summaries make that cheap).
FULL_READ_ROWS = 20_000

# Curves are grouped the way a researcher reads them; a key lands in the first group
# whose test matches it, and anything unknown in "other". Figures measured on training
# batches (train_*), on held-out validation tasks (val_*) and on the evaluation set
# (eval_*) never share a group.
METRIC_GROUPS: list[tuple[str, str]] = [
    ("losses", "losses"),
    ("training", "training batches"),
    ("validation", "validation (held-out tasks)"),
    ("evaluation", "evaluation set"),
    ("optimisation", "optimisation"),
    ("throughput", "memory & speed"),
    ("other", "other"),
]
BASELINE_MARK = "_baseline_"   # <prefix>_baseline_<figure>: the reference line of <prefix>_<figure>


def baseline_key(key: str) -> str | None:
    """The key of the no-learning baseline drawn as a reference line on ``key``'s plot
    (``val_cell_acc`` -> ``val_baseline_cell_acc``), or None for a key that has none."""
    prefix, _, figure = key.partition("_")
    if prefix not in ("val", "eval") or not figure or BASELINE_MARK in key:
        return None
    return f"{prefix}{BASELINE_MARK}{figure}"


def is_baseline(key: str) -> bool:
    return BASELINE_MARK in key


def metric_group(key: str) -> str:
    if "loss" in key:
        return "losses"
    if key.startswith("val_"):
        return "validation"
    if key.startswith("eval_"):
        return "evaluation"
    # Test-time training logs one point per task: the running score is the evaluation's,
    # the fit to the task's demonstrations is training, its time and steps are speed;
    # whether the rule student answered the task sits beside the task's score.
    if key in ("ttt_pass1", "ttt_pass2", "ttt_task_score", "ttt_rule"):
        return "evaluation"
    if key in ("ttt_seconds", "ttt_steps"):
        return "throughput"
    if key.startswith("torch_") or any(word in key for word in ("per_s", "_mb", "mem", "time")):
        return "throughput"
    # train_*, and the unprefixed batch figures older runs logged, are training batches.
    if key.startswith("train_") or any(word in key for word in ("acc", "exact", "pass", "score")):
        return "training"
    if key in ("lr", "grad_norm", "epoch") or any(word in key for word in ("lr", "grad", "scale")):
        return "optimisation"
    return "other"


def keys_by_group(keys: list[str]) -> dict[str, list[str]]:
    """Plotted keys by group. Baseline keys get no plot of their own: each is the
    reference line of the figure it names (``baseline_key``)."""
    groups: dict[str, list[str]] = {name: [] for name, _ in METRIC_GROUPS}
    for key in keys:
        if not is_baseline(key):
            groups[metric_group(key)].append(key)
    return {name: sorted(found, key=_key_order) for name, found in groups.items() if found}


def _key_order(key: str) -> tuple:
    return (key != "loss", key)   # the bare "loss" leads its group


# ------------------------------------------------------------------------ runs
@dataclass
class RunRow:
    run: Run
    status: str               # effective: "crashed" when the engine is gone
    best: float | None        # best validation pass@2; an eval run's score so far


def run_best(store: Store, run: Run) -> float | None:
    """The figure the runs list shows: a training run's best validation pass@2; an
    evaluation's pass@2 (over the tasks done so far, while it runs)."""
    if run.kind == "eval":
        evaluation_id = store.evaluation_of_run(run.id)
        return store.get_evaluation(evaluation_id).score_pass2 if evaluation_id is not None else None
    return store.best_value(run.id, BEST_KEY)


def load_runs(workspace: Path, now: float | None = None) -> list[RunRow]:
    with Store.open_readonly(workspace) as store:
        return [RunRow(run, effective_status(run, now), run_best(store, run)) for run in store.list_runs()]


def run_exists(workspace: Path, run_id: int) -> bool:
    with Store.open_readonly(workspace) as store:
        return any(run.id == run_id for run in store.list_runs())


# ---------------------------------------------------------------------- curves
@dataclass
class SeriesRequest:
    """What the dashboard holds of one (run, key) series: the last step and the run's
    metrics revision it belongs to (``last_step`` None: nothing held, load afresh)."""
    run_id: int
    key: str
    last_step: int | None
    revision: int
    step_min: int | None = None   # a fresh load starts here (the "last N steps" window)


@dataclass
class SeriesUpdate:
    run_id: int
    key: str
    chunk: SeriesChunk
    reset: bool   # True: replaces what the dashboard holds (first load or rows replaced)


@dataclass
class RunSnapshot:
    rows: dict[int, RunRow]       # the run shown, and any runs overlaid on it
    keys: list[str]               # metric keys the run shown has logged
    updates: list[SeriesUpdate]
    events: list[Event]
    db_seconds: float = 0.0       # time spent in SQLite, for the benchmark
    reason: str | None = None     # why a failed or crashed run ended, from its log


def load_run(workspace: Path, run_id: int, requests: list[SeriesRequest], points: int,
             events_after: int, overlay_ids: tuple[int, ...] = (), now: float | None = None,
             first_group: bool = False) -> RunSnapshot:
    """The run (and the runs overlaid on it), its metric keys, and for each request
    either the rows after the held cursor or a fresh downsampled series when nothing is
    held or the run's rows were replaced by a resume. ``first_group``: also load the
    first group's series, so opening a run takes one round trip, not two."""
    started = time.perf_counter()
    with Store.open_readonly(workspace) as store:
        rows = {}
        for rid in (run_id, *overlay_ids):
            run = store.get_run(rid)
            rows[rid] = RunRow(run, effective_status(run, now), run_best(store, run))
        keys = store.metric_names(run_id)
        if first_group and not requests:
            group = next(iter(keys_by_group(keys).values()), [])
            requests = [SeriesRequest(rid, key, None, -1) for rid in (run_id, *overlay_ids)
                        for key in group]
        updates = []
        for request in requests:
            revision = rows[request.run_id].run.metrics_revision
            chunk = None
            if request.last_step is not None and request.revision == revision:
                chunk = store.read_metrics_after(request.run_id, request.key, request.last_step,
                                                 limit=FULL_READ_ROWS)
                if len(chunk.steps) < FULL_READ_ROWS:
                    if chunk.steps:
                        updates.append(SeriesUpdate(request.run_id, request.key, chunk, reset=False))
                    continue
            # Nothing held, rows replaced, or so many new rows that a fresh sample is cheaper.
            chunk = store.read_series_downsampled(request.run_id, request.key, points,
                                                  step_min=request.step_min)
            updates.append(SeriesUpdate(request.run_id, request.key, chunk, reset=True))
        snapshot = RunSnapshot(rows, keys, updates,
                               store.events(run_id, after_id=events_after))
    snapshot.db_seconds = time.perf_counter() - started
    return snapshot


# ------------------------------------------------------------------------- log
TRACEBACK_LINE = re.compile(r"^(Traceback |  File |    |\w+(\.\w+)*(Error|Exception|Interrupt)\b)")
ERROR_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception|Interrupt|OutOfMemory\w*)\b:?.*")


def read_log_tail(workspace: Path, run: Run, max_bytes: int = 64_000) -> str:
    if not run.log_path:
        return ""
    path = workspace / run.log_path
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log yet at {path})"


def failure_reason(log_text: str) -> str | None:
    """The line of a log that best says why a run ended: the last exception line."""
    for line in reversed(log_text.splitlines()):
        stripped = line.strip()
        if ERROR_LINE.match(stripped):
            return stripped[:200]
    return None


def is_traceback_line(line: str) -> bool:
    return bool(TRACEBACK_LINE.match(line)) or "CUDA out of memory" in line


# ---------------------------------------------------------------------- system
SYSTEM_HISTORY_KEYS = ("cpu_pct", "ram_used_gb", "gpu0_util_pct", "gpu0_mem_used_mb")
TORCH_KEYS = ("torch_allocated_mb", "torch_reserved_mb", "torch_peak_mb")


@dataclass
class EngineUsage:
    pid: int
    run_id: int
    cpu_pct: float | None     # None on the first sample of a process (psutil needs two)
    rss_mb: float


@dataclass
class SystemSnapshot:
    gpus: list[sysinfo.GpuInfo]
    nvml_reason: str              # why there is no GPU part ("" when NVML works)
    live: dict[str, float]        # this machine now: cpu_pct, ram_*, disk_*
    engine: dict[str, float]      # the run's latest torch gauges, from the database
    history: dict[str, list[float]] = field(default_factory=dict)   # key -> recent values
    our_pids: dict[int, int] = field(default_factory=dict)          # pid -> run id
    engines: list[EngineUsage] = field(default_factory=list)        # CPU and memory per engine
    sampled_at: float = 0.0


# psutil measures a process's CPU between two calls: the Process objects are kept from one
# sample to the next (per pid), so every refresh after the first has a figure.
_SAMPLED: dict[int, psutil.Process] = {}


def engine_usage(pids: dict[int, int]) -> list[EngineUsage]:
    """CPU % (of one core) and resident memory of each engine process (and its children)."""
    usage = []
    for pid, run_id in sorted(pids.items()):
        process = _SAMPLED.get(pid)
        try:
            first = process is None
            if first:
                process = _SAMPLED[pid] = psutil.Process(pid)
            cpu = process.cpu_percent(None)
            usage.append(EngineUsage(pid, run_id, None if first else cpu,
                                     process.memory_info().rss / 2**20))
        except psutil.Error:
            _SAMPLED.pop(pid, None)   # ended between the two calls
    for gone in set(_SAMPLED) - set(pids):
        _SAMPLED.pop(gone, None)
    return usage


def engine_pids(runs: list[Run]) -> dict[int, int]:
    """Processes on this host that are verifiably our engines (pid, host and start time
    match), with their children (torchrun ranks), mapped to their run id."""
    pids = {}
    for run in runs:
        if run.status != "running" or run.host != HOST:
            continue
        if not process_matches(run.pid, run.host, run.proc_start_time):
            continue
        pids[run.pid] = run.id
        try:
            for child in psutil.Process(run.pid).children(recursive=True):
                pids[child.pid] = run.id
        except psutil.Error:
            continue  # the engine ended between the two calls
    return pids


def load_system(workspace: Path, run_id: int | None, history_s: float = 600.0,
                now: float | None = None) -> SystemSnapshot:
    """Live machine figures (psutil, NVML) plus, for a run, its recorded samples: the
    engine's torch gauges and the recent history, which exists even for the hours when
    no dashboard was open."""
    now = time.time() if now is None else now
    live = sysinfo.sample_system(workspace)
    gpus = sysinfo.gpus()
    snapshot = SystemSnapshot(gpus, "" if gpus else (sysinfo.nvml_reason() or "no GPU found"),
                              live, {}, sampled_at=now)
    with Store.open_readonly(workspace) as store:
        snapshot.our_pids = engine_pids(store.list_runs())
        snapshot.engines = engine_usage(snapshot.our_pids)
        if run_id is not None:
            latest = store.latest_system_samples(run_id)
            snapshot.engine = {k: v for k, v in latest.items() if k.startswith("torch_")}
            keys = list(SYSTEM_HISTORY_KEYS) + [f"gpu{g.index}_util_pct" for g in gpus[1:]]
            for key in keys:
                values = [v for _, v in store.system_series(run_id, key, since=now - history_s)]
                if values:
                    snapshot.history[key] = values
    return snapshot
