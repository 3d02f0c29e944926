"""A real process holding a run's lease, for tests of what others see meanwhile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HOLDER = """
import sys, time
from db.lease import Lease
lease = Lease.acquire(sys.argv[1], int(sys.argv[2]))
print(lease.token, flush=True)
time.sleep(120)
"""


def hold_lease(workspace: Path, run_id: int) -> subprocess.Popen:
    """Start a process that takes the run's lease and sleeps; returns once it holds it
    (its token is in ``proc.token``)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(workspace), str(run_id)],
                            stdout=subprocess.PIPE, text=True)
    proc.token = proc.stdout.readline().strip()
    assert proc.token, "the lease holder did not start"
    return proc
