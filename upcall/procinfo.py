"""Everything the upcall needs from the caller's /proc entry, read before any namespace switch.

After setns(CLONE_NEWNS) /proc may be the container's, where the kernel's pid means another
process or none (cifs.upcall reads the wrong process there). So the caller is pinned with a
pidfd, its files are read in the host namespaces, and the pidfd is checked afterwards: if the
pid was recycled meanwhile, the read is refused instead of trusting another process's data.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field

from .ccache import ENVIRON_MAX
from .errors import CallerGone

NAMESPACES = ("cgroup", "ipc", "uts", "net", "pid", "time", "mnt", "user")


@dataclass(frozen=True)
class IdMap:
    """A /proc/PID/{uid,gid}_map: lines of `inside outside count`."""

    ranges: tuple[tuple[int, int, int], ...]

    @classmethod
    def parse(cls, text: str) -> IdMap:
        rows = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3:
                rows.append((int(parts[0]), int(parts[1]), int(parts[2])))
        return cls(tuple(rows))

    def to_inside(self, outside_id: int) -> int | None:
        """The id as seen inside the namespace, or None if it is not mapped there."""
        for inside, outside, count in self.ranges:
            if outside <= outside_id < outside + count:
                return inside + (outside_id - outside)
        return None


IDENTITY = IdMap(((0, 0, 4294967295),))


@dataclass(frozen=True)
class CallerInfo:
    pid: int
    uid: int  # real uid, init namespace
    gid: int  # real gid, init namespace
    environ: bytes | None  # None: not read (not probing) or unreadable/too large
    environ_note: str
    ns_inodes: dict[str, int] = field(default_factory=dict)
    uid_map: IdMap = IDENTITY
    gid_map: IdMap = IDENTITY


def _status_ids(text: str) -> tuple[int, int]:
    uid = gid = -1
    for line in text.splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
        elif line.startswith("Gid:"):
            gid = int(line.split()[1])
    return uid, gid


def read_environ(pid: int, limit: int = ENVIRON_MAX) -> tuple[bytes | None, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        return None, f"environ unreadable: {e.strerror}"
    if len(data) > limit:
        return None, f"environ is larger than {limit} bytes"
    return data, ""


def ns_inodes(pid: int | str) -> dict[str, int]:
    out = {}
    for ns in NAMESPACES:
        try:
            out[ns] = os.stat(f"/proc/{pid}/ns/{ns}").st_ino
        except FileNotFoundError:
            continue  # kernel without that namespace type
    return out


def read_caller(pid: int, *, want_environ: bool) -> CallerInfo:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise CallerGone(f"caller pid {pid} does not exist") from None
    try:
        base = f"/proc/{pid}"
        try:
            with open(f"{base}/status") as f:
                uid, gid = _status_ids(f.read())
            with open(f"{base}/uid_map") as f:
                uid_map = IdMap.parse(f.read())
            with open(f"{base}/gid_map") as f:
                gid_map = IdMap.parse(f.read())
        except FileNotFoundError:
            raise CallerGone(f"caller pid {pid} exited") from None
        environ, note = read_environ(pid) if want_environ else (None, "not probed")
        inodes = ns_inodes(pid)
        try:
            signal.pidfd_send_signal(pidfd, 0)  # still the same process?
        except ProcessLookupError:
            raise CallerGone(f"caller pid {pid} exited while being read") from None
    finally:
        os.close(pidfd)
    return CallerInfo(pid, uid, gid, environ, note, inodes, uid_map, gid_map)
