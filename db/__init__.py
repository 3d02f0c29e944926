"""The workspace's SQLite store. Imports neither torch nor textual."""

from db.schema import SCHEMA_VERSION, SchemaTooNew
from db.store import (
    DB_FILENAME, HEARTBEAT_STALE_S, RUN_STATUSES, TERMINAL_STATUSES, Checkpoint, Evaluation, Event, Prediction, Run,
    SeriesChunk, Store, TaskScore, WorkspaceError, db_path, run_dir_relative,
)

__all__ = [
    "SCHEMA_VERSION", "SchemaTooNew", "DB_FILENAME", "HEARTBEAT_STALE_S", "RUN_STATUSES",
    "TERMINAL_STATUSES", "Checkpoint", "Evaluation", "Event", "Prediction", "Run", "TaskScore", "SeriesChunk", "Store", "WorkspaceError",
    "db_path", "run_dir_relative",
]
