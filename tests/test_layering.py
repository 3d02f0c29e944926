"""The dependency direction of the house plan, checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


@pytest.mark.parametrize("module", ["db", "db.store", "db.processes", "db.sysinfo", "db.metric_logger"])
def test_db_imports_neither_torch_nor_textual(module):
    loaded = _modules_after(f"import {module}")
    assert "torch" not in loaded
    assert "textual" not in loaded


def test_dashboard_never_imports_torch():
    loaded = _modules_after(
        "import sage_tui.__main__, sage_tui.app, sage_tui.control, sage_tui.data\n"
        "import sage_tui.screens.runs, sage_tui.screens.run, sage_tui.screens.checkpoints\n"
        "import sage_tui.screens.tasks, sage_tui.screens.task_view, sage_tui.screens.compare\n"
        "import sage_tui.screens.new_run, sage_tui.screens.system, sage_tui.data_tasks")
    assert "textual" in loaded  # the import really happened
    assert "torch" not in loaded
    assert not any(m == "engine" or m.startswith("engine.") for m in loaded)


def test_sage_tui_help_answers_without_torch():
    code = ("import sys, runpy\nsys.argv = ['sage-tui', '--help']\n"
            "try:\n    runpy.run_module('sage_tui', run_name='__main__')\nexcept SystemExit:\n    pass\n")
    loaded = _modules_after(code)
    assert "torch" not in loaded


def test_engine_light_commands_do_not_import_torch(tmp_path):
    code = (f"import sys\nfrom engine.cli import main\nmain(['runs', '--workspace', {str(tmp_path)!r}])\n")
    loaded = _modules_after(code)
    assert "torch" not in loaded
