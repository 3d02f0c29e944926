"""Writing files so that a failure never leaves half a file, and saying why it failed.

``atomic_write`` is the one way the engine writes a file that must be whole
(checkpoints, the feature store's index and manifest): write a temporary file beside
the target, flush and fsync it, rename it over the target, fsync the folder. On any
failure the temporary file is removed (first, so that a full disk has room again for
the run's reason to be recorded) and the target is left as it was.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path
from typing import BinaryIO, Callable

from db.lease import filesystem_of

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
NEARLY_FULL_BYTES = 1 << 20  # a write failing with less than this free is a full disk
RESERVE_BYTES = 1 << 20      # room an engine keeps aside to record how its run ended
RESERVE_NAME = ".space-reserve"


class DiskFull(OSError):
    """No room to write: the message names the filesystem and its free space."""

    def __str__(self) -> str:
        return self.strerror


def size_text(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def free_space_text(path: str | os.PathLike) -> str:
    """'12.0 MiB free of 1.0 GiB on /mnt/x (ext4)'."""
    mount, fs_type = filesystem_of(path)
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return f"on {mount} ({fs_type})"
    return f"{size_text(usage.free)} free of {size_text(usage.total)} on {mount} ({fs_type})"


def reserve_space(folder: Path) -> Path | None:
    """Set ``RESERVE_BYTES`` of real disk aside in ``folder`` (a file of zeros), so that a
    run that fills the disk can still free room to record why it ended. None when there
    is no room even for that."""
    path = Path(folder) / RESERVE_NAME
    try:
        with open(path, "wb") as handle:
            handle.write(bytes(RESERVE_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        path.unlink(missing_ok=True)
        return None
    return path


def root_cause(exc: BaseException) -> BaseException:
    """The first exception of a chain (what a wrapper was raised from)."""
    seen = {id(exc)}
    while (exc.__cause__ or exc.__context__) is not None and id(exc.__cause__ or exc.__context__) not in seen:
        exc = exc.__cause__ or exc.__context__
        seen.add(id(exc))
    return exc


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (or anything it was raised from) says the disk or quota is full."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return True
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return True
        if isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> int:
    """Write ``path`` whole or not at all: ``write(handle)`` fills a temporary file that
    then replaces ``path``. Returns the size written. A full disk raises DiskFull (with
    the free space and the filesystem) after the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        # Some writers (torch.save) hide the OSError behind their own error: a write that
        # failed with the disk (nearly) full, measured before the partial file goes, is one.
        full = is_disk_full(exc) or _nearly_full(path.parent)
        tmp.unlink(missing_ok=True)
        if full and isinstance(exc, Exception):
            raise DiskFull(errno.ENOSPC, f"disk full writing {path.name} "
                                         f"({free_space_text(path.parent)}); its partial file was removed") from exc
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)
    return path.stat().st_size
