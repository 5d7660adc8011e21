"""Atomic file publication without locks, shared by the results store, claims and checkpoints.

A file is written completely under a unique hidden temporary name in its final folder, fsynced,
then given its final name in one step: ``os.link`` when the name must be free (it fails on an
existing name, atomically, even across NFS clients) or ``os.replace`` otherwise. Readers thus
see either no file or all of it, and no writer ever needs ``flock``. Assumes rename and link
within one directory are atomic (POSIX local filesystems, NFSv3/v4, Lustre, GPFS, BeeGFS).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import socket
import time
import uuid
from pathlib import Path

TMP_PREFIX = ".tmp-"
"""Names of temporary files start with this; readers skip them."""
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")


def safe_name(text: str) -> str:
    """``text`` as a file-name part: itself if plainly safe (a config hash), else ``~`` + its SHA-256."""
    return text if _SAFE.match(text) else "~" + hashlib.sha256(text.encode()).hexdigest()[:32]


def stamp() -> str:
    """A unique, time-ordered name part: ``<ns since epoch>-<random>``."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:10]}"


def write_temp(folder: Path, data: bytes) -> Path:
    """Writes ``data`` to a new uniquely named hidden file in ``folder``, fsynced.

    The name holds host and pid, so a leftover of a killed writer says whose it was.
    """
    tmp = folder / f"{TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:  # os.write may write less than asked (signals, quotas)
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def publish(tmp: Path, target: Path, *, exclusive: bool, strict: bool = False) -> bool:
    """Gives a complete temporary file its final name, atomically; removes ``tmp``.

    Args:
        tmp: From :func:`write_temp`, in the same folder as ``target``.
        target: The final name.
        exclusive: Fail (return ``False``) if ``target`` exists: ``link`` creates a name only
            if it is free, atomically even across NFS clients.
        strict: Where the filesystem has no hard links: ``False`` falls back to a replacing
            ``rename`` (the last of racing writers wins; readers never see a partial file),
            ``True`` to an ``O_EXCL`` create (exactly one wins; the content lands after the
            name, so readers may briefly see a short file).

    Returns:
        Whether ``target`` now holds ``tmp``'s content.
    """
    try:
        if not exclusive:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            except OSError as e:  # no hard links here
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                if not strict:
                    os.replace(tmp, target)
                elif not _create(target, tmp.read_bytes()):
                    return False
        fsync_dir(target.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _create(target: Path, data: bytes) -> bool:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def fsync_dir(folder: Path) -> None:
    """Makes a new name in ``folder`` durable; best effort (not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
