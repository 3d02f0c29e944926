"""Read queries the dashboard needs beyond Store's own methods (kept apart to ease
merging). Each takes an open Store."""

from __future__ import annotations

from db.store import Store


def last_event_time(store: Store, run_id: int, kind: str) -> float | None:
    """When the run's latest event of this kind was written, or None."""
    row = store.conn.execute("SELECT MAX(t) FROM events WHERE run_id = ? AND kind = ?",
                             (run_id, kind)).fetchone()
    return row[0] if row else None


def checkpoint_steps(store: Store) -> dict[int, int]:
    """Checkpoint id -> step, for every checkpoint in the workspace."""
    return {row[0]: row[1] for row in store.conn.execute("SELECT id, step FROM checkpoints")}


def task_cell_accuracy(store: Store, evaluation_id: int) -> dict[str, float | None]:
    """Task id -> mean cell accuracy of attempt 1 over the task's test inputs."""
    return {row[0]: row[1] for row in store.conn.execute(
        "SELECT task_id, AVG(cell_acc_1) FROM predictions WHERE evaluation_id = ? GROUP BY task_id",
        (evaluation_id,))}


def has_table(store: Store, name: str) -> bool:
    return store.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                              (name,)).fetchone() is not None
