"""Worker errors, reported in one place.

Textual posts a worker's state changes to the node that started it, without bubbling,
so each screen hands failures to ``SageApp.report_worker_error`` through this mixin.
"""

from __future__ import annotations

from textual.worker import Worker, WorkerState


class ReportsWorkerErrors:
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.app.report_worker_error(event.worker)
