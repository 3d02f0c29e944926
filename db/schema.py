"""Schema of the workspace database, as forward migrations.

Each entry of MIGRATIONS brings the database from version ``i`` to ``i + 1``; the
version lives in ``PRAGMA user_version``. A database written by newer code than this
is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3

MIGRATION_V1 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- train | extract | eval
    status TEXT NOT NULL,               -- queued | running | stopped | finished | failed
    config TEXT NOT NULL DEFAULT '{}',  -- JSON
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    heartbeat_at REAL,
    pid INTEGER,
    host TEXT,
    proc_start_time REAL,               -- psutil create_time of the engine process
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER,
    epoch REAL,
    progress REAL,                      -- 0..1
    eta_s REAL,
    device TEXT,
    log_path TEXT,                      -- relative to the workspace
    message TEXT,                       -- last error or stop reason
    metrics_revision INTEGER NOT NULL DEFAULT 0  -- bumped when logged rows are replaced
);

CREATE TABLE metric_keys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

-- Long table: one row per (run, key, step). The primary key makes "one key of one run,
-- steps in a range" a range scan, and INSERT OR REPLACE keeps a step from appearing twice.
CREATE TABLE metrics (
    run_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    value REAL,
    wall_time REAL NOT NULL,
    PRIMARY KEY (run_id, key_id, step)
) WITHOUT ROWID;

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    t REAL NOT NULL,
    kind TEXT NOT NULL,                 -- started | stopped | resumed | checkpoint | error | oom | ...
    message TEXT NOT NULL,
    data TEXT                           -- JSON or NULL
);
CREATE INDEX events_run ON events (run_id, id);

CREATE TABLE control (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    action TEXT NOT NULL,               -- stop
    created_at REAL NOT NULL,
    handled_at REAL
);
CREATE INDEX control_pending ON control (run_id, handled_at);
"""

MIGRATION_V2 = """
CREATE TABLE checkpoints (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    epoch REAL,
    path TEXT NOT NULL,                 -- relative to the workspace
    size_bytes INTEGER,
    metrics TEXT,                       -- JSON: validation metrics at this step
    created_at REAL NOT NULL,
    reason TEXT                         -- periodic | stop | final | oom
);
CREATE INDEX checkpoints_run ON checkpoints (run_id, step);

CREATE TABLE system_samples (
    run_id INTEGER,                     -- NULL: sampled by a dashboard, not an engine
    t REAL NOT NULL,
    key TEXT NOT NULL,                  -- cpu_pct, ram_used, gpu0_util, gpu0_mem_used, ...
    value REAL
);
CREATE INDEX system_samples_run ON system_samples (run_id, key, t);

CREATE TABLE evaluations (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,            -- the eval run that produced it
    source_run_id INTEGER,              -- the training run whose checkpoint was evaluated
    checkpoint_id INTEGER,
    dataset TEXT NOT NULL,
    created_at REAL NOT NULL,
    n_tasks INTEGER NOT NULL,
    n_test_inputs INTEGER NOT NULL,
    score_pass1 REAL NOT NULL,          -- official rule: mean over tasks of solved fraction
    score_pass2 REAL NOT NULL,
    summary TEXT                        -- JSON: cell / shape / per-colour accuracy
);

CREATE TABLE predictions (
    evaluation_id INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    test_index INTEGER NOT NULL,
    test_input TEXT NOT NULL,           -- JSON grid
    expected TEXT,                      -- JSON grid
    attempt_1 TEXT NOT NULL,            -- JSON grid
    attempt_2 TEXT,                     -- JSON grid
    correct_1 INTEGER NOT NULL,
    correct_2 INTEGER NOT NULL,
    cell_acc_1 REAL,
    cell_acc_2 REAL,
    PRIMARY KEY (evaluation_id, task_id, test_index)
) WITHOUT ROWID;

CREATE TABLE task_scores (
    evaluation_id INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    n_test_inputs INTEGER NOT NULL,
    solved_pass1 INTEGER NOT NULL,
    solved_pass2 INTEGER NOT NULL,
    score REAL NOT NULL,                -- solved_pass2 / n_test_inputs
    PRIMARY KEY (evaluation_id, task_id)
) WITHOUT ROWID;
"""

MIGRATION_V3 = """
-- The demonstration pairs of each evaluated task, so the dashboard can show a task
-- without loading datasets (it never imports the engine).
CREATE TABLE task_demos (
    evaluation_id INTEGER NOT NULL,
    task_id TEXT NOT NULL,
    train TEXT NOT NULL,                -- JSON: [{"input": grid, "output": grid}, ...]
    PRIMARY KEY (evaluation_id, task_id)
) WITHOUT ROWID;
"""

MIGRATION_V4 = """
-- Min and max of each metric over blocks of 1024 steps, kept up to date as rows are
-- written, so a plot of a million-step series reads a thousand rows, spikes included.
CREATE TABLE metric_blocks (
    run_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    block INTEGER NOT NULL,             -- step >> 10
    min_step INTEGER,
    min_value REAL,
    min_wall REAL,
    max_step INTEGER,
    max_value REAL,
    max_wall REAL,
    PRIMARY KEY (run_id, key_id, block)
) WITHOUT ROWID;
INSERT INTO metric_blocks (run_id, key_id, block)
    SELECT DISTINCT run_id, key_id, step >> 10 FROM metrics;
UPDATE metric_blocks SET
    min_step = (SELECT m.step FROM metrics m WHERE m.run_id = metric_blocks.run_id
                  AND m.key_id = metric_blocks.key_id
                  AND m.step BETWEEN metric_blocks.block * 1024 AND metric_blocks.block * 1024 + 1023
                  AND m.value IS NOT NULL ORDER BY m.value ASC LIMIT 1),
    max_step = (SELECT m.step FROM metrics m WHERE m.run_id = metric_blocks.run_id
                  AND m.key_id = metric_blocks.key_id
                  AND m.step BETWEEN metric_blocks.block * 1024 AND metric_blocks.block * 1024 + 1023
                  AND m.value IS NOT NULL ORDER BY m.value DESC LIMIT 1);
UPDATE metric_blocks SET
    min_value = (SELECT value FROM metrics m WHERE m.run_id = metric_blocks.run_id
                   AND m.key_id = metric_blocks.key_id AND m.step = metric_blocks.min_step),
    min_wall = (SELECT wall_time FROM metrics m WHERE m.run_id = metric_blocks.run_id
                   AND m.key_id = metric_blocks.key_id AND m.step = metric_blocks.min_step),
    max_value = (SELECT value FROM metrics m WHERE m.run_id = metric_blocks.run_id
                   AND m.key_id = metric_blocks.key_id AND m.step = metric_blocks.max_step),
    max_wall = (SELECT wall_time FROM metrics m WHERE m.run_id = metric_blocks.run_id
                   AND m.key_id = metric_blocks.key_id AND m.step = metric_blocks.max_step);
"""

MIGRATION_V5 = """
-- Run ids are never reused: AUTOINCREMENT, seeded above every id any table ever saw, so
-- an engine that outlived its run can never write into a new run of the same id. The
-- owner column holds the token of the engine that owns the run (its lease), and every engine
-- write checks it. SQLite cannot add AUTOINCREMENT to a table: rebuild it.
CREATE TABLE runs_v5 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    heartbeat_at REAL,
    pid INTEGER,
    host TEXT,
    proc_start_time REAL,
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER,
    epoch REAL,
    progress REAL,
    eta_s REAL,
    device TEXT,
    log_path TEXT,
    message TEXT,
    metrics_revision INTEGER NOT NULL DEFAULT 0,
    owner TEXT                          -- token of the engine holding the run's lease
);
INSERT INTO runs_v5 (id, name, kind, status, config, created_at, started_at, ended_at,
    heartbeat_at, pid, host, proc_start_time, step, total_steps, epoch, progress, eta_s,
    device, log_path, message, metrics_revision)
    SELECT id, name, kind, status, config, created_at, started_at, ended_at, heartbeat_at,
    pid, host, proc_start_time, step, total_steps, epoch, progress, eta_s, device, log_path,
    message, metrics_revision FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v5 RENAME TO runs;
DELETE FROM sqlite_sequence WHERE name = 'runs';
INSERT INTO sqlite_sequence (name, seq) SELECT 'runs', COALESCE(MAX(id), 0) FROM (
    SELECT MAX(id) AS id FROM runs UNION ALL SELECT MAX(run_id) FROM metrics
    UNION ALL SELECT MAX(run_id) FROM events UNION ALL SELECT MAX(run_id) FROM checkpoints
    UNION ALL SELECT MAX(run_id) FROM evaluations UNION ALL SELECT MAX(source_run_id) FROM evaluations
    UNION ALL SELECT MAX(run_id) FROM control);
"""

MIGRATIONS: list[str] = [MIGRATION_V1, MIGRATION_V2, MIGRATION_V3, MIGRATION_V4, MIGRATION_V5]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer SAGE TUI than this one."""


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def refuse_newer(conn: sqlite3.Connection) -> None:
    """Raise SchemaTooNew for a database written by a newer SAGE TUI; reads only."""
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"this workspace database has schema version {current}, but this SAGE TUI "
            f"only knows versions up to {SCHEMA_VERSION}: upgrade sage-tui "
            f"(pip install -U sage-tui) or open another workspace"
        )


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations from the database's version up to ``target``.

    Returns the version reached. Each migration runs in its own transaction, so a
    failure leaves the database at the last complete version.
    """
    refuse_newer(conn)
    current = schema_version(conn)
    for version in range(current, target):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return max(current, target)
