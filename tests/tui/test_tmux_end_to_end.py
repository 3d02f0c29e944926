"""End to end in a real terminal: tmux at 80x24 runs `sage-tui`; keys go in with
send-keys and the screen comes back with capture-pane. Start a run from the form, see
its curve move, stop it, see it stopped, quit (the engine was already stopped)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from tests.tui.helpers import run_ids, run_status, stop_all_engines, wait_for

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed: the end-to-end test needs it")


class Tmux:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        return subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True, text=True,
                              check=True).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "sage")

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "sage", *keys)

    def wait_for_text(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.screen())
            if found:
                return found
            time.sleep(0.3)
        raise AssertionError(f"{pattern!r} never appeared; the screen:\n{self.screen()}")


@pytest.mark.slow
def test_start_watch_and_stop_a_run_in_tmux(workspace):
    tmux = Tmux(f"sage-test-{os.getpid()}")
    command = f"{sys.executable} -m sage_tui --workspace {workspace}"
    tmux("new-session", "-d", "-s", "sage", "-x", "80", "-y", "24",
         "-e", "TERM=xterm-256color", command)
    try:
        tmux.wait_for_text(r"no runs yet", timeout=20)
        tmux.keys("n")
        tmux.wait_for_text(r"New run", timeout=10)
        tmux.keys("C-s")
        run_id = wait_for(lambda: run_ids(workspace), timeout=30, what="the run row")[0]
        tmux.wait_for_text(r"running", timeout=60)
        tmux.keys("Enter")
        first = tmux.wait_for_text(r"loss  latest (\S+)", timeout=90).group(1)
        step_text = tmux.wait_for_text(r"step (\d+)", timeout=10).group(1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:   # the curve moves: new latest value, later step
            screen = tmux.screen()
            latest = re.search(r"loss  latest (\S+)", screen)
            step = re.search(r"step (\d+)", screen)
            if latest and step and latest.group(1) != first and int(step.group(1)) > int(step_text):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the curve did not move; the screen:\n{tmux.screen()}")
        tmux.keys("s")
        tmux.wait_for_text(r"stopped", timeout=60)
        assert run_status(workspace, run_id) == "stopped"
        tmux.keys("q")
        wait_for(lambda: "sage" not in tmux("list-sessions", "-F", "#{session_name}")
                 if _server_alive(tmux) else True, timeout=15, what="the dashboard to quit")
    finally:
        subprocess.run([TMUX, "-L", tmux.socket, "kill-server"], capture_output=True)
        stop_all_engines(workspace)


def _server_alive(tmux: Tmux) -> bool:
    return subprocess.run([TMUX, "-L", tmux.socket, "has-session", "-t", "sage"],
                          capture_output=True).returncode == 0
