"""Run leases: one engine per run, guaranteed by the operating system.

An engine owns a run by holding an exclusive ``flock`` on ``runs/NNNN/engine.lock``. It
takes the lock before its first write to the run and keeps it until the process ends:
the kernel drops it when the process dies, however it dies (``kill -9`` included), and a
stopped process (SIGSTOP, Ctrl-Z) keeps it. So "is the lock held?" is the truth about
whether an engine still owns the run, with no timeout to wait for.

The lock file also says who holds it (pid, host, owner token) for messages. Readers
probe the lock with a shared, non-blocking ``flock`` that they drop at once; an engine
retries its exclusive lock for a moment so that a probe never makes it fail.

flock is only trusted on a local filesystem: on NFS, CIFS and other network
filesystems two machines may both get it, so ``network_filesystem`` lets callers warn.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
import uuid
from pathlib import Path

from db.store import WorkspaceError, run_dir_relative

LOCK_NAME = "engine.lock"
ACQUIRE_RETRY_S = 0.25  # long enough to outlast a reader's probe, short enough to answer at once

# Filesystems on which flock and SQLite's own locking are not to be trusted across machines.
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "afs",
                       "ceph", "glusterfs", "fuse.glusterfs", "lustre", "gpfs", "beegfs")


class LeaseHeld(WorkspaceError):
    """Another engine owns the run."""

    def __init__(self, run_id: int, pid: int | None):
        owner = f"engine pid {pid}" if pid else "another engine"
        super().__init__(f"run {run_id} is already owned by {owner}; "
                         f"stop it first (`sage-engine stop {run_id}`)")
        self.run_id = run_id
        self.pid = pid


def lock_path(workspace: str | os.PathLike, run_id: int) -> Path:
    return Path(workspace) / run_dir_relative(run_id) / LOCK_NAME


def _read_holder(path: Path) -> int | None:
    try:
        fields = path.read_text().split()
        return int(fields[0]) if fields else None
    except (OSError, ValueError):
        return None


class Lease:
    """This process's ownership of one run; ``token`` is written on the run's row and
    checked by every engine write (the belt to the lock's braces)."""

    def __init__(self, run_id: int, path: Path, fd: int, token: str):
        self.run_id = run_id
        self.path = path
        self.fd = fd
        self.token = token

    @classmethod
    def acquire(cls, workspace: str | os.PathLike, run_id: int) -> "Lease":
        """Take the run's lease or raise LeaseHeld naming the holder's pid."""
        path = lock_path(workspace, run_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise WorkspaceError(f"the workspace {workspace} is read-only: "
                                     f"runs cannot be started or resumed in it") from exc
            raise
        deadline = time.monotonic() + ACQUIRE_RETRY_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise LeaseHeld(run_id, _read_holder(path)) from None
                time.sleep(0.01)
        token = uuid.uuid4().hex
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {token}\n".encode(), 0)
        return cls(run_id, path, fd, token)

    def release(self) -> None:
        """Drop the lock (closing the file does); the process ending does the same."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def lease_holder(workspace: str | os.PathLike, run_id: int) -> int | None:
    """The pid of the engine holding the run's lease (0 if it cannot be read), or None
    when no process holds it. Never creates anything: safe on a read-only workspace."""
    path = lock_path(workspace, run_id)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(path) or 0
    finally:
        os.close(fd)  # also drops the shared probe lock when it was taken
    return None


def filesystem_of(path: str | os.PathLike, mount_table: str | None = None) -> tuple[str, str]:
    """(mount point, filesystem type) of the mount holding ``path``: the longest mount
    point above it in ``mount_table`` (default: this process's /proc/self/mounts)."""
    if mount_table is None:
        try:
            with open("/proc/self/mounts") as mounts:
                mount_table = mounts.read()
        except OSError:
            mount_table = ""
    target = os.path.realpath(path)
    best = ("/", "unknown")
    for line in mount_table.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best[0]):
            best = (mount_point, parts[2])
    return best


def network_filesystem(path: str | os.PathLike, mount_table: str | None = None) -> str | None:
    """The filesystem type when ``path`` is on a network filesystem, else None."""
    fs_type = filesystem_of(path, mount_table)[1]
    return fs_type if fs_type in NETWORK_FILESYSTEMS or fs_type.startswith("nfs") else None
