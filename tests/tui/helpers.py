"""Helpers for dashboard tests that drive real engine processes."""

from __future__ import annotations

import time

from textual.app import App

from db.processes import effective_status, signal_engine
from db.store import Store


async def wait_until(pilot, condition, timeout: float = 90.0, what: str = "condition"):
    """Let the app run until ``condition()`` is truthy; fail with ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await pilot.pause(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_for(condition, timeout: float = 90.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def run_status(workspace, run_id: int) -> str:
    with Store.open_readonly(workspace) as store:
        return effective_status(store.get_run(run_id))


def run_ids(workspace) -> list[int]:
    with Store.open_readonly(workspace) as store:
        return [run.id for run in store.list_runs()]


def latest_step(workspace, run_id: int) -> int:
    with Store.open_readonly(workspace) as store:
        return store.get_run(run_id).step


def stop_all_engines(workspace) -> None:
    """Tests leave no engine behind: SIGTERM every verified engine, wait for it to end."""
    with Store.open(workspace) as store:
        runs = store.list_runs()
    for run in runs:
        if effective_status(run) == "running":
            signal_engine(run)
    for run in runs:
        try:
            wait_for(lambda: run_status(workspace, run.id) != "running", timeout=60, what="engine exit")
        except AssertionError:
            import signal
            signal_engine(run, signal.SIGKILL)


class ScreenApp(App):
    """A bare app holding one screen, with what screens expect of the real app: a
    ``workspace`` and ``report_worker_error`` (here the errors are recorded, so a test
    can assert on them or that there were none)."""

    TITLE = "SAGE TUI"

    def __init__(self, workspace, screen_factory) -> None:
        super().__init__()
        self.workspace = workspace
        self.screen_factory = screen_factory
        self.errors: list[BaseException] = []

    def on_mount(self) -> None:
        self.push_screen(self.screen_factory())

    def report_worker_error(self, worker) -> None:
        self.errors.append(worker.error)
