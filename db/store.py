"""The workspace database: typed reads and writes over one SQLite file.

Writers (the engine, and the dashboard for control requests and new runs) use
``Store``; readers (the dashboard's workers) use ``Store.open_readonly``. A connection
belongs to the thread that opened it: open one per thread.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

import sqlite_utils

from db.schema import SCHEMA_VERSION, SchemaTooNew, migrate, refuse_newer, schema_version

DB_FILENAME = "sage.db"
BUSY_TIMEOUT_MS = 10_000

# queued -> running -> stopped | finished | failed. "crashed" is never written: it is
# what a reader concludes when a running run's process is gone or its heartbeat stale.
RUN_STATUSES = ("queued", "running", "stopped", "finished", "failed")
TERMINAL_STATUSES = ("stopped", "finished", "failed")
HEARTBEAT_STALE_S = 30.0


class WorkspaceError(RuntimeError):
    """A problem with the workspace a user can fix; the message says how."""


class WorkspaceReadOnly(WorkspaceError):
    """The workspace cannot be written: reading commands still work."""

    def __init__(self, workspace: Path):
        super().__init__(f"the workspace {workspace} is read-only: this command writes to it "
                         f"(`sage-engine runs`, `export` and the dashboard still work read-only)")


class OwnershipLost(RuntimeError):
    """This engine no longer owns its run (another engine took it, or it was deleted):
    it must not write another byte to it."""


@dataclass
class Run:
    id: int
    name: str
    kind: str
    status: str
    config: dict
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    heartbeat_at: float | None = None
    pid: int | None = None
    host: str | None = None
    proc_start_time: float | None = None
    step: int = 0
    total_steps: int | None = None
    epoch: float | None = None
    progress: float | None = None
    eta_s: float | None = None
    device: str | None = None
    log_path: str | None = None
    message: str | None = None
    metrics_revision: int = 0
    owner: str | None = None            # token of the engine holding the run's lease
    workspace: Path | None = field(default=None, compare=False)  # where its lease lives

    @classmethod
    def from_row(cls, row: sqlite3.Row, workspace: Path | None = None) -> "Run":
        values = {f.name: row[f.name] for f in fields(cls) if f.name != "workspace"}
        values["config"] = json.loads(values["config"] or "{}")
        return cls(**values, workspace=workspace)


@dataclass
class Event:
    id: int
    run_id: int
    t: float
    kind: str
    message: str
    data: dict | None


@dataclass
class Checkpoint:
    id: int
    run_id: int
    step: int
    epoch: float | None
    path: str
    size_bytes: int | None
    metrics: dict
    created_at: float
    reason: str | None


@dataclass
class Evaluation:
    id: int
    run_id: int
    source_run_id: int | None
    checkpoint_id: int | None
    dataset: str
    created_at: float
    n_tasks: int
    n_test_inputs: int
    score_pass1: float
    score_pass2: float
    summary: dict

    # Reads of the summary the evaluation job stores (older evaluations lack some parts).
    @property
    def attempts_per_input(self) -> int | None:
        """Distinct attempts per test input: 1 means its pass@2 is a pass@1."""
        return self.summary.get("attempts_per_input")

    @property
    def overlap_checked(self) -> bool:
        return bool((self.summary.get("overlap") or {}).get("checked"))

    @property
    def overlapping_tasks(self) -> list[str]:
        """Tasks that share pairs with the checkpoint's training tasks (found by content)."""
        return list((self.summary.get("overlap") or {}).get("task_ids") or [])

    @property
    def score_unseen(self) -> float | None:
        """pass@2 over the tasks the checkpoint never trained on; None if not checked or
        if it trained on every one."""
        if not self.overlap_checked:
            return None
        if not self.overlapping_tasks:
            return self.score_pass2
        clean = self.summary.get("without_overlap") or {}
        return clean.get("pass2") if clean.get("n_tasks") else None

    def baseline(self, figure: str) -> float | None:
        """The no-learning baseline's ``figure`` (pass2, cell_acc, ...) on the same tasks."""
        return self.summary.get(f"baseline_{figure}")


@dataclass
class Prediction:
    """One test input of one task: expected grid, up to two attempts, correctness."""
    evaluation_id: int
    task_id: str
    test_index: int
    test_input: list[list[int]]
    expected: list[list[int]] | None
    attempt_1: list[list[int]]
    attempt_2: list[list[int]] | None
    correct_1: bool
    correct_2: bool
    cell_acc_1: float | None
    cell_acc_2: float | None


@dataclass
class TaskScore:
    evaluation_id: int
    task_id: str
    n_test_inputs: int
    solved_pass1: int
    solved_pass2: int
    score: float   # official rule: solved (by either attempt) / test inputs

    @property
    def score_pass1(self) -> float:
        return self.solved_pass1 / self.n_test_inputs if self.n_test_inputs else 0.0


def arc_score(task_scores: list[TaskScore]) -> tuple[float, float]:
    """The official ARC rule, the one implementation of it: (pass@1, pass@2), each the
    mean over tasks of the fraction of a task's test inputs solved (by the first attempt;
    by either of two). No tasks score 0."""
    if not task_scores:
        return 0.0, 0.0
    n = len(task_scores)
    return (sum(t.score_pass1 for t in task_scores) / n, sum(t.score for t in task_scores) / n)


BEST_METRIC = "val_pass2"  # what makes a checkpoint "best": validation pass@2
# Ties on pass@2 (most often: nothing solved yet) go to the closer answers, then to the
# earlier step, which reached the same figures first.
BEST_TIE_BREAKS = ("val_pass1", "val_cell_acc")


def is_validated(checkpoint: Checkpoint) -> bool:
    """Whether the checkpoint carries validation figures measured on its own weights.
    The engine stores figures with a checkpoint only when it validated at that step."""
    return checkpoint.metrics.get(BEST_METRIC) is not None


def best_checkpoint_id(checkpoints: list[Checkpoint]) -> int | None:
    """The best validated checkpoint: highest validation pass@2, then pass@1, then cell
    accuracy, then the earlier step. Never one that was not validated. Retention keeps it,
    the dashboard stars it."""
    validated = [c for c in checkpoints if is_validated(c)]
    if not validated:
        return None

    def rank(c: Checkpoint) -> tuple:
        figures = [c.metrics.get(key) for key in (BEST_METRIC, *BEST_TIE_BREAKS)]
        return (*(-1.0 if v is None or v != v else v for v in figures), -c.step)

    return max(validated, key=rank).id


def nothing_solved(checkpoints: list[Checkpoint]) -> bool:
    """True when checkpoints were validated and none solved a single validation task."""
    validated = [c for c in checkpoints if is_validated(c)]
    return bool(validated) and all(c.metrics[BEST_METRIC] == 0 for c in validated)


@dataclass
class SeriesChunk:
    """Rows of one metric key read after a cursor."""

    steps: list[int]
    values: list[float]
    wall_times: list[float]
    revision: int  # the run's metrics_revision these rows belong to

    @property
    def last_step(self) -> int | None:
        return self.steps[-1] if self.steps else None


def run_dir_relative(run_id: int) -> str:
    """A run's folder (engine log, checkpoints), relative to the workspace."""
    return f"runs/{run_id:04d}"


def db_path(workspace: str | os.PathLike) -> Path:
    return Path(workspace) / DB_FILENAME


def _configure(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


class Store:
    """One connection to a workspace database, with typed operations."""

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool):
        self.conn = conn
        self.path = path
        self.readonly = readonly
        self.db = sqlite_utils.Database(conn)
        self._key_ids: dict[str, int] = {}
        self.owner_token: str | None = None  # set by an engine: its writes check it

    def act_as_owner(self, token: str) -> "Store":
        """From now on every write to a run checks that this token still owns it, and
        raises OwnershipLost otherwise."""
        self.owner_token = token
        return self

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, workspace: str | os.PathLike) -> "Store":
        """Open (creating and migrating if needed) the workspace database for writing."""
        workspace = Path(workspace)
        if workspace.exists() and not workspace.is_dir():
            raise WorkspaceError(f"workspace {workspace} is a file, not a folder: pass a folder")
        try:
            workspace.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(f"cannot create workspace folder {workspace}: {exc.strerror}") from exc
        path = db_path(workspace)
        if not os.access(workspace, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise WorkspaceReadOnly(workspace)
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            _configure(conn)
            # Before anything that writes (WAL switch, migrations): a newer database is
            # refused untouched.
            refuse_newer(conn)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA temp_store = MEMORY")
            migrate(conn)
        except SchemaTooNew as exc:
            conn.close()
            raise WorkspaceError(str(exc)) from exc
        except sqlite3.DatabaseError as exc:
            if "readonly" in str(exc) or "read-only" in str(exc):
                raise WorkspaceReadOnly(workspace) from exc
            raise WorkspaceError(
                f"{path} is not a readable SAGE TUI database ({exc}); "
                f"move it aside or choose another workspace"
            ) from exc
        return cls(conn, path, readonly=False)

    @classmethod
    def open_readonly(cls, workspace: str | os.PathLike) -> "Store":
        """A read-only connection, for dashboard workers. The database must exist."""
        path = db_path(workspace)
        if not path.exists():
            raise WorkspaceError(f"no workspace database at {path}: start a run first")
        # A workspace on read-only media cannot hold the WAL index SQLite needs to read:
        # there nothing can write either, so the file is read as immutable.
        immutable = "&immutable=1" if not os.access(path.parent, os.W_OK) else ""
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro{immutable}", uri=True, isolation_level=None,
                                   check_same_thread=True, timeout=BUSY_TIMEOUT_MS / 1000)
            _configure(conn)
            version = schema_version(conn)
        except sqlite3.DatabaseError as exc:
            raise WorkspaceError(f"{path} is not a readable SAGE TUI database ({exc})") from exc
        if version > SCHEMA_VERSION:
            conn.close()
            raise WorkspaceError(
                f"this workspace database has schema version {version}, newer than this "
                f"SAGE TUI knows ({SCHEMA_VERSION}): upgrade sage-tui"
            )
        return cls(conn, path, readonly=True)

    @staticmethod
    def database_current(workspace: str | os.PathLike) -> bool:
        """True when the workspace database exists at this version's schema (nothing to
        create or migrate), so a reader may use it without a writable workspace."""
        try:
            with Store.open_readonly(workspace) as store:
                return schema_version(store.conn) == SCHEMA_VERSION
        except WorkspaceError:
            return False

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def workspace(self) -> Path:
        return self.path.parent

    def transaction(self):
        """``with store.transaction():`` — one write transaction, committed on exit."""
        return _Transaction(self.conn)

    # ------------------------------------------------------------------- runs
    def create_run(self, name: str, kind: str, config: dict, status: str = "queued") -> Run:
        assert status in RUN_STATUSES, status
        run_id = self.db["runs"].insert(
            {"name": name, "kind": kind, "status": status, "config": json.dumps(config),
             "created_at": time.time()}
        ).last_pk
        self.update_run(run_id, log_path=run_dir_relative(run_id) + "/engine.log")
        return self.get_run(run_id)

    def get_run(self, run_id: int) -> Run:
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise WorkspaceError(f"no run {run_id} in {self.path}: list runs with `sage-engine runs`")
        return Run.from_row(row, self.workspace)

    def list_runs(self) -> list[Run]:
        rows = self.conn.execute("SELECT * FROM runs ORDER BY id DESC").fetchall()
        return [Run.from_row(r, self.workspace) for r in rows]

    def update_run(self, run_id: int, **values: Any) -> None:
        """Set columns of a run's row. An engine's store (act_as_owner) writes only while
        its token still owns the run."""
        if "config" in values:
            values["config"] = json.dumps(values["config"])
        columns = ", ".join(f"{k} = ?" for k in values)
        if self.owner_token is None:
            self.conn.execute(f"UPDATE runs SET {columns} WHERE id = ?", (*values.values(), run_id))
            return
        updated = self.conn.execute(f"UPDATE runs SET {columns} WHERE id = ? AND owner = ?",
                                    (*values.values(), run_id, self.owner_token)).rowcount
        if not updated:
            raise OwnershipLost(f"run {run_id} is no longer owned by this engine: not writing to it")

    def check_owner(self, run_id: int) -> None:
        """Raise OwnershipLost unless this store's owner token (if any) still owns
        ``run_id``. Inside a write transaction, the check and the write are one."""
        if self.owner_token is None:
            return
        row = self.conn.execute("SELECT owner FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None or row[0] != self.owner_token:
            raise OwnershipLost(f"run {run_id} is no longer owned by this engine: not writing to it")

    def set_engine_process(self, run_id: int, pid: int, host: str, proc_start_time: float) -> None:
        """Record the process that is starting a queued run, so a reader can tell an
        engine still starting from one that died before taking its lease."""
        self.conn.execute("UPDATE runs SET pid = ?, host = ?, proc_start_time = ? "
                          "WHERE id = ? AND status = 'queued'", (pid, host, proc_start_time, run_id))

    def mark_running(self, run_id: int, pid: int, host: str, proc_start_time: float,
                     device: str | None = None, owner: str | None = None) -> None:
        """This process now runs the run (``owner``: the token of the lease it holds;
        from now on only writes carrying that token are accepted). A stop request left
        unhandled by a previous engine (one that stopped on SIGTERM before reading it)
        is void, so a resumed run does not stop at once."""
        now = time.time()
        with self.transaction():
            updated = self.conn.execute(
                "UPDATE runs SET status = 'running', pid = ?, host = ?, proc_start_time = ?, "
                "started_at = ?, heartbeat_at = ?, ended_at = NULL, message = NULL, device = ?, "
                "owner = ? WHERE id = ?",
                (pid, host, proc_start_time, now, now, device, owner, run_id)).rowcount
            if not updated:
                raise WorkspaceError(f"no run {run_id} in {self.path}: it was deleted")
            self.conn.execute("UPDATE control SET handled_at = ? WHERE run_id = ? AND handled_at IS NULL",
                              (now, run_id))

    def finish_run(self, run_id: int, status: str, message: str | None = None) -> None:
        assert status in TERMINAL_STATUSES, status
        self.update_run(run_id, status=status, ended_at=time.time(), message=message, eta_s=None)

    def heartbeat(self, run_id: int, **progress: Any) -> None:
        """Record that the engine is alive, with optional progress columns."""
        self.update_run(run_id, heartbeat_at=time.time(), **progress)

    def delete_run(self, run_id: int) -> None:
        with self.transaction():
            for table in ("metrics", "events", "control", "checkpoints", "system_samples"):
                self.conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            eval_ids = [r[0] for r in self.conn.execute(
                "SELECT id FROM evaluations WHERE run_id = ?", (run_id,))]
            for eval_id in eval_ids:
                for table in ("predictions", "task_scores", "task_demos"):
                    self.conn.execute(f"DELETE FROM {table} WHERE evaluation_id = ?", (eval_id,))
            self.conn.execute("DELETE FROM evaluations WHERE run_id = ?", (run_id,))
            self.conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # ---------------------------------------------------------------- metrics
    def key_id(self, name: str) -> int:
        key_id = self._key_ids.get(name)
        if key_id is None:
            row = self.conn.execute("SELECT id FROM metric_keys WHERE name = ?", (name,)).fetchone()
            if row is None:
                if self.readonly:
                    raise KeyError(name)
                self.conn.execute("INSERT OR IGNORE INTO metric_keys (name) VALUES (?)", (name,))
                row = self.conn.execute("SELECT id FROM metric_keys WHERE name = ?", (name,)).fetchone()
            key_id = self._key_ids[name] = row[0]
        return key_id

    def append_metrics(self, run_id: int, rows: Iterable[tuple[str, int, float, float]]) -> int:
        """Write (key, step, value, wall_time) rows in one transaction; returns the count.

        A row for a (key, step) that exists replaces it, so a step never appears twice.
        The per-block minimum and maximum (metric_blocks) are updated in the same
        transaction.
        """
        encoded = [(run_id, self.key_id(key), step, value, wall) for key, step, value, wall in rows]
        with self.transaction():
            self.check_owner(run_id)
            self.conn.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, key_id, step, value, wall_time) "
                "VALUES (?, ?, ?, ?, ?)", encoded)
            self.conn.executemany(_UPSERT_BLOCK, _block_extremes(encoded))
        return len(encoded)

    def truncate_metrics_after(self, run_id: int, step: int) -> int:
        """Delete rows logged after ``step`` (a resume point) and bump the run's revision,
        so readers holding those rows know to read the series again."""
        with self.transaction():
            self.check_owner(run_id)
            deleted = self.conn.execute(
                "DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, step)).rowcount
            boundary = step >> BLOCK_SHIFT
            self.conn.execute("DELETE FROM metric_blocks WHERE run_id = ? AND block >= ?",
                              (run_id, boundary))
            # The block holding the resume point keeps its rows up to it: summarise them again.
            kept = self.conn.execute(
                "SELECT ?, key_id, step, value, wall_time FROM metrics WHERE run_id = ? AND step >= ?",
                (run_id, run_id, boundary << BLOCK_SHIFT)).fetchall()
            self.conn.executemany(_UPSERT_BLOCK, _block_extremes([tuple(r) for r in kept]))
            self.conn.execute(
                "UPDATE runs SET metrics_revision = metrics_revision + 1, step = ? WHERE id = ?",
                (step, run_id))
        return deleted

    def metric_names(self, run_id: int) -> list[str]:
        # One key at a time: each probe is an index seek, where a DISTINCT would scan.
        names = []
        for key_id, name in self.conn.execute("SELECT id, name FROM metric_keys ORDER BY name"):
            hit = self.conn.execute(
                "SELECT 1 FROM metrics WHERE run_id = ? AND key_id = ? LIMIT 1", (run_id, key_id)
            ).fetchone()
            if hit:
                names.append(name)
        return names

    def best_value(self, run_id: int, key: str, higher_is_better: bool = True) -> float | None:
        """Best logged value of one key (an index range scan over that key alone)."""
        try:
            key_id = self.key_id(key)
        except KeyError:
            return None
        aggregate = "MAX" if higher_is_better else "MIN"
        row = self.conn.execute(
            f"SELECT {aggregate}(value) FROM metrics WHERE run_id = ? AND key_id = ?",
            (run_id, key_id)).fetchone()
        return row[0]

    def _revision(self, run_id: int) -> int:
        row = self.conn.execute("SELECT metrics_revision FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row[0] if row else 0

    def read_metrics_after(self, run_id: int, key: str, after_step: int | None = None,
                           limit: int | None = None) -> SeriesChunk:
        """Rows of one key with step > ``after_step`` (all rows when None), in step order."""
        revision = self._revision(run_id)
        try:
            key_id = self.key_id(key)
        except KeyError:
            return SeriesChunk([], [], [], revision)
        sql = ("SELECT step, value, wall_time FROM metrics WHERE run_id = ? AND key_id = ? "
               "AND step > ? ORDER BY step")
        params: list[Any] = [run_id, key_id, -1 if after_step is None else after_step]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self.conn.execute(sql, params).fetchall()
        return SeriesChunk([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], revision)

    def read_series_downsampled(self, run_id: int, key: str, points: int,
                                step_min: int | None = None,
                                step_max: int | None = None) -> SeriesChunk:
        """At most about ``points`` rows of one key, for a plot of ``points`` pixels.

        Steps are cut into ``points / 2`` buckets; each keeps its minimum and its maximum
        (so a spike survives) and the last row of the range is always kept (so the live
        end of a curve does not jump). A short range is read row by row; a long one from
        the per-block extremes in metric_blocks, plus the rows of its two edge blocks, so
        a million-step series costs about a thousand rows.
        """
        revision = self._revision(run_id)
        try:
            key_id = self.key_id(key)
        except KeyError:
            return SeriesChunk([], [], [], revision)
        where = "run_id = ? AND key_id = ? AND step >= ? AND step <= ?"
        bounds = (run_id, key_id, -1 if step_min is None else step_min,
                  2**62 if step_max is None else step_max)
        # Two queries: SQLite answers a lone MIN() or MAX() with one index seek each,
        # but scans the whole range when both share a SELECT.
        lo = self.conn.execute(f"SELECT MIN(step) FROM metrics WHERE {where}", bounds).fetchone()[0]
        hi = self.conn.execute(f"SELECT MAX(step) FROM metrics WHERE {where}", bounds).fetchone()[0]
        if lo is None:
            return SeriesChunk([], [], [], revision)
        raw = f"SELECT step, value, wall_time FROM metrics WHERE {where} ORDER BY step"
        first_block, last_block = lo >> BLOCK_SHIFT, hi >> BLOCK_SHIFT
        def rows(first: int, last: int) -> list[tuple]:
            return [tuple(r) for r in self.conn.execute(raw, (run_id, key_id, first, last))]

        if last_block - first_block < 2 or hi - lo < RAW_READ_STEPS:
            candidates = rows(lo, hi)
        else:
            inner_lo, inner_hi = (first_block + 1) << BLOCK_SHIFT, last_block << BLOCK_SHIFT
            candidates = rows(lo, inner_lo - 1)
            for block in self.conn.execute(
                    "SELECT min_step, min_value, min_wall, max_step, max_value, max_wall "
                    "FROM metric_blocks WHERE run_id = ? AND key_id = ? AND block > ? AND block < ?",
                    (run_id, key_id, first_block, last_block)):
                if block[0] is not None:
                    candidates += [tuple(block[0:3]), tuple(block[3:6])]
            candidates += rows(inner_hi, hi)
        kept = _min_max_buckets(sorted(set(candidates)), lo, hi, max(1, points // 2))
        return SeriesChunk([r[0] for r in kept], [r[1] for r in kept], [r[2] for r in kept], revision)

    # ----------------------------------------------------------------- events
    def add_event(self, run_id: int, kind: str, message: str, data: dict | None = None) -> None:
        with self.transaction():
            self.check_owner(run_id)
            self.conn.execute(
                "INSERT INTO events (run_id, t, kind, message, data) VALUES (?, ?, ?, ?, ?)",
                (run_id, time.time(), kind, message, json.dumps(data) if data is not None else None))

    def events(self, run_id: int | None = None, after_id: int = 0, limit: int = 500) -> list[Event]:
        where, params = "id > ?", [after_id]
        if run_id is not None:
            where += " AND run_id = ?"
            params.append(run_id)
        rows = self.conn.execute(
            f"SELECT * FROM events WHERE {where} ORDER BY id LIMIT ?", (*params, limit)).fetchall()
        return [Event(r["id"], r["run_id"], r["t"], r["kind"], r["message"],
                      json.loads(r["data"]) if r["data"] else None) for r in rows]

    # -------------------------------------------------------- control requests
    def request_stop(self, run_id: int) -> None:
        self.conn.execute("INSERT INTO control (run_id, action, created_at) VALUES (?, 'stop', ?)",
                          (run_id, time.time()))

    def pending_control(self, run_id: int) -> list[str]:
        """Unhandled control actions for a run, marked handled as they are read."""
        with self.transaction():
            rows = self.conn.execute(
                "SELECT id, action FROM control WHERE run_id = ? AND handled_at IS NULL ORDER BY id",
                (run_id,)).fetchall()
            if rows:
                self.conn.execute(
                    "UPDATE control SET handled_at = ? WHERE run_id = ? AND handled_at IS NULL",
                    (time.time(), run_id))
        return [r["action"] for r in rows]

    # ------------------------------------------------------------ checkpoints
    def add_checkpoint(self, run_id: int, step: int, epoch: float | None, path: str,
                       size_bytes: int, metrics: dict, reason: str) -> int:
        with self.transaction():
            self.check_owner(run_id)
            return self.conn.execute(
                "INSERT INTO checkpoints (run_id, step, epoch, path, size_bytes, metrics, created_at, "
                "reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, step, epoch, path, size_bytes, json.dumps(metrics), time.time(), reason)
            ).lastrowid

    def checkpoints(self, run_id: int) -> list[Checkpoint]:
        rows = self.conn.execute(
            "SELECT * FROM checkpoints WHERE run_id = ? ORDER BY step", (run_id,)).fetchall()
        return [Checkpoint(r["id"], r["run_id"], r["step"], r["epoch"], r["path"], r["size_bytes"],
                           json.loads(r["metrics"] or "{}"), r["created_at"], r["reason"])
                for r in rows]

    def get_checkpoint(self, checkpoint_id: int) -> Checkpoint:
        row = self.conn.execute("SELECT run_id FROM checkpoints WHERE id = ?",
                                (checkpoint_id,)).fetchone()
        if row is None:
            raise WorkspaceError(f"no checkpoint {checkpoint_id} in {self.path}")
        return next(c for c in self.checkpoints(row[0]) if c.id == checkpoint_id)

    def delete_checkpoint(self, checkpoint_id: int) -> None:
        with self.transaction():
            row = self.conn.execute("SELECT run_id FROM checkpoints WHERE id = ?", (checkpoint_id,)).fetchone()
            if row is not None:
                self.check_owner(row[0])
            self.conn.execute("DELETE FROM checkpoints WHERE id = ?", (checkpoint_id,))

    # ------------------------------------------------------------ evaluations
    def add_evaluation(self, run_id: int, source_run_id: int | None, checkpoint_id: int | None,
                       dataset: str, predictions: list[Prediction], task_scores: list[TaskScore],
                       summary: dict, demonstrations: dict[str, list[dict]] | None = None) -> int:
        """Store one evaluation, its predictions and per-task scores in one transaction.
        The overall scores follow the ARC Prize rule (``arc_score``). ``summary`` holds the
        evaluation's other figures: baselines, scores without overlapping tasks, attempts."""
        n_tasks = len(task_scores)
        pass1, pass2 = arc_score(task_scores)
        with self.transaction():
            self.check_owner(run_id)
            cursor = self.conn.execute(
                "INSERT INTO evaluations (run_id, source_run_id, checkpoint_id, dataset, created_at, "
                "n_tasks, n_test_inputs, score_pass1, score_pass2, summary) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (run_id, source_run_id, checkpoint_id, dataset, time.time(), n_tasks,
                 len(predictions), pass1, pass2, json.dumps(summary)))
            evaluation_id = cursor.lastrowid
            self._insert_predictions(evaluation_id, predictions)
            self.conn.executemany(
                "INSERT INTO task_scores VALUES (?,?,?,?,?,?)",
                [(evaluation_id, t.task_id, t.n_test_inputs, t.solved_pass1, t.solved_pass2, t.score)
                 for t in task_scores])
            self.conn.executemany(
                "INSERT INTO task_demos VALUES (?,?,?)",
                [(evaluation_id, task_id, json.dumps(pairs))
                 for task_id, pairs in (demonstrations or {}).items()])
        return evaluation_id

    def _insert_predictions(self, evaluation_id: int, predictions: list[Prediction]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO predictions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [(evaluation_id, p.task_id, p.test_index, json.dumps(p.test_input),
              json.dumps(p.expected) if p.expected is not None else None,
              json.dumps(p.attempt_1),
              json.dumps(p.attempt_2) if p.attempt_2 is not None else None,
              int(p.correct_1), int(p.correct_2), p.cell_acc_1, p.cell_acc_2)
             for p in predictions])

    # An evaluation written task by task (test-time training): started empty, one
    # transaction per task, its overall scores recomputed from the task scores each time,
    # so a stopped evaluation shows the tasks done so far and resumes after them.
    def start_evaluation(self, run_id: int, source_run_id: int | None, checkpoint_id: int | None,
                         dataset: str, summary: dict) -> int:
        return self.conn.execute(
            "INSERT INTO evaluations (run_id, source_run_id, checkpoint_id, dataset, created_at, "
            "n_tasks, n_test_inputs, score_pass1, score_pass2, summary) VALUES (?,?,?,?,?,0,0,0,0,?)",
            (run_id, source_run_id, checkpoint_id, dataset, time.time(), json.dumps(summary))).lastrowid

    def add_task_result(self, evaluation_id: int, predictions: list[Prediction], score: TaskScore,
                        demonstrations: list[dict]) -> None:
        with self.transaction():
            self._insert_predictions(evaluation_id, predictions)
            self.conn.execute("INSERT OR REPLACE INTO task_scores VALUES (?,?,?,?,?,?)",
                              (evaluation_id, score.task_id, score.n_test_inputs, score.solved_pass1,
                               score.solved_pass2, score.score))
            self.conn.execute("INSERT OR REPLACE INTO task_demos VALUES (?,?,?)",
                              (evaluation_id, score.task_id, json.dumps(demonstrations)))
            scores = self.task_scores(evaluation_id)
            pass1, pass2 = arc_score(scores)
            self.conn.execute(
                "UPDATE evaluations SET n_tasks = ?, n_test_inputs = ?, score_pass1 = ?, "
                "score_pass2 = ? WHERE id = ?",
                (len(scores), sum(t.n_test_inputs for t in scores), pass1, pass2, evaluation_id))

    def update_evaluation_summary(self, evaluation_id: int, summary: dict) -> None:
        self.conn.execute("UPDATE evaluations SET summary = ? WHERE id = ?",
                          (json.dumps(summary), evaluation_id))

    def evaluation_of_run(self, run_id: int) -> int | None:
        row = self.conn.execute("SELECT id FROM evaluations WHERE run_id = ? ORDER BY id LIMIT 1",
                                (run_id,)).fetchone()
        return row[0] if row else None

    def evaluated_task_ids(self, evaluation_id: int) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT task_id FROM task_scores WHERE evaluation_id = ?", (evaluation_id,))]

    def task_demonstrations(self, evaluation_id: int, task_id: str) -> list[dict]:
        """The evaluated task's demonstration pairs: [{"input": grid, "output": grid}]."""
        row = self.conn.execute("SELECT train FROM task_demos WHERE evaluation_id = ? AND task_id = ?",
                                (evaluation_id, task_id)).fetchone()
        return json.loads(row[0]) if row else []

    def evaluations(self, run_id: int | None = None, source_run_id: int | None = None) -> list[Evaluation]:
        where, params = [], []
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        if source_run_id is not None:
            where.append("source_run_id = ?")
            params.append(source_run_id)
        sql = "SELECT * FROM evaluations" + (f" WHERE {' AND '.join(where)}" if where else "")
        rows = self.conn.execute(sql + " ORDER BY id", params).fetchall()
        return [Evaluation(r["id"], r["run_id"], r["source_run_id"], r["checkpoint_id"], r["dataset"],
                           r["created_at"], r["n_tasks"], r["n_test_inputs"], r["score_pass1"],
                           r["score_pass2"], json.loads(r["summary"] or "{}")) for r in rows]

    def get_evaluation(self, evaluation_id: int) -> Evaluation:
        row = self.conn.execute("SELECT run_id FROM evaluations WHERE id = ?", (evaluation_id,)).fetchone()
        if row is None:
            raise WorkspaceError(f"no evaluation {evaluation_id} in {self.path}: "
                                 f"list them with `sage-engine runs`")
        return next(e for e in self.evaluations(run_id=row[0]) if e.id == evaluation_id)

    def predictions(self, evaluation_id: int, task_id: str | None = None) -> list[Prediction]:
        sql, params = "SELECT * FROM predictions WHERE evaluation_id = ?", [evaluation_id]
        if task_id is not None:
            sql += " AND task_id = ?"
            params.append(task_id)
        rows = self.conn.execute(sql + " ORDER BY task_id, test_index", params).fetchall()

        def grid(text):
            return json.loads(text) if text is not None else None

        return [Prediction(r["evaluation_id"], r["task_id"], r["test_index"], grid(r["test_input"]),
                           grid(r["expected"]), grid(r["attempt_1"]), grid(r["attempt_2"]),
                           bool(r["correct_1"]), bool(r["correct_2"]), r["cell_acc_1"], r["cell_acc_2"])
                for r in rows]

    def task_scores(self, evaluation_id: int) -> list[TaskScore]:
        rows = self.conn.execute(
            "SELECT * FROM task_scores WHERE evaluation_id = ? ORDER BY task_id", (evaluation_id,))
        return [TaskScore(*tuple(r)) for r in rows]

    # --------------------------------------------------------- system samples
    def add_system_samples(self, run_id: int | None, samples: dict[str, float],
                           t: float | None = None) -> None:
        t = time.time() if t is None else t
        with self.transaction():
            if run_id is not None:
                self.check_owner(run_id)
            self.conn.executemany(
                "INSERT INTO system_samples (run_id, t, key, value) VALUES (?, ?, ?, ?)",
                [(run_id, t, k, v) for k, v in samples.items()])

    def system_series(self, run_id: int, key: str, since: float = 0.0) -> list[tuple[float, float]]:
        return [(r[0], r[1]) for r in self.conn.execute(
            "SELECT t, value FROM system_samples WHERE run_id = ? AND key = ? AND t > ? ORDER BY t",
            (run_id, key, since))]

    def latest_system_samples(self, run_id: int) -> dict[str, float]:
        row = self.conn.execute("SELECT MAX(t) FROM system_samples WHERE run_id = ?",
                                (run_id,)).fetchone()
        if row[0] is None:
            return {}
        return {r[0]: r[1] for r in self.conn.execute(
            "SELECT key, value FROM system_samples WHERE run_id = ? AND t = ?", (run_id, row[0]))}


BLOCK_SHIFT = 10          # metric_blocks summarise 1024 steps each
RAW_READ_STEPS = 16_384   # ranges shorter than this are read row by row

_UPSERT_BLOCK = """
INSERT INTO metric_blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, key_id, block) DO UPDATE SET
    min_step = CASE WHEN min_value IS NULL OR excluded.min_value < min_value
                    THEN excluded.min_step ELSE min_step END,
    min_wall = CASE WHEN min_value IS NULL OR excluded.min_value < min_value
                    THEN excluded.min_wall ELSE min_wall END,
    min_value = CASE WHEN min_value IS NULL OR excluded.min_value < min_value
                     THEN excluded.min_value ELSE min_value END,
    max_step = CASE WHEN max_value IS NULL OR excluded.max_value > max_value
                    THEN excluded.max_step ELSE max_step END,
    max_wall = CASE WHEN max_value IS NULL OR excluded.max_value > max_value
                    THEN excluded.max_wall ELSE max_wall END,
    max_value = CASE WHEN max_value IS NULL OR excluded.max_value > max_value
                     THEN excluded.max_value ELSE max_value END
"""


def _block_extremes(rows: list[tuple]) -> list[tuple]:
    """(run, key, block, min_step, min, min_wall, max_step, max, max_wall) for each block
    touched by ``rows`` of (run, key, step, value, wall). All CASEs in the upsert read the
    row's old values, so the comparisons stay consistent."""
    extremes: dict[tuple[int, int, int], list] = {}
    for run_id, key_id, step, value, wall in rows:
        if value is None or value != value:  # NULL and NaN are not extremes
            continue
        slot = (run_id, key_id, step >> BLOCK_SHIFT)
        found = extremes.get(slot)
        if found is None:
            extremes[slot] = [step, value, wall, step, value, wall]
            continue
        if value < found[1]:
            found[0:3] = step, value, wall
        if value > found[4]:
            found[3:6] = step, value, wall
    return [(*slot, *found) for slot, found in extremes.items()]


def _min_max_buckets(rows: list, lo: int, hi: int, buckets: int) -> list:
    """Rows (step, value, wall) sorted by step → each bucket's min and max row, plus the
    last row."""
    if len(rows) <= 2 * buckets:
        return rows
    span = hi - lo + 1
    best: dict[int, list] = {}
    for row in rows:
        if row[1] is None:
            continue
        bucket = (row[0] - lo) * buckets // span
        found = best.get(bucket)
        if found is None:
            best[bucket] = [row, row]
        elif row[1] < found[0][1]:
            found[0] = row
        elif row[1] > found[1][1]:
            found[1] = row
    kept = {row for pair in best.values() for row in pair}
    kept.add(rows[-1])
    return sorted(kept)


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        self.outer = not self.conn.in_transaction
        if self.outer:
            self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.outer:
            return
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
