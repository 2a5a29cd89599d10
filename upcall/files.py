"""Write a file completely or not at all. Root, in the helper (a dry run's --payload-out,
0600: it holds a session key) and in gssproxy-conf (configuration under /etc).

A temporary file in the same directory (O_EXCL|O_NOFOLLOW: nothing planted there is
followed), fsync, rename over the target, fsync the directory. No tempfile module: the thin
client may call this.
"""

from __future__ import annotations

import os


def write_atomic(path: str, data: bytes, mode: int) -> None:
    """Root: `path` holds `data` (mode `mode`) completely, or is unchanged. OSError."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:  # noqa: SIM105 - no contextlib on the thin client's path
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    """Make a rename or unlink in `directory` durable."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
