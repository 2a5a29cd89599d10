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
from .errors import CallerGone, NamespaceError
from .pidpin import PinError, fd_pid, pin, thread_group

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
    pid: int  # the thread group (process) the kernel's pid= belongs to
    uid: int  # real uid, init namespace
    gid: int  # real gid, init namespace
    environ: bytes | None  # None: not read (not probing) or unreadable/too large
    environ_note: str
    ns_inodes: dict[str, int] = field(default_factory=dict)
    uid_map: IdMap = IDENTITY
    gid_map: IdMap = IDENTITY
    pidfd: int = -1  # pins the process; workers setns() on it; the parent closes it
    thread: int | None = None  # pid= named this non-leader thread of `pid`


def _status_fields(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines())}


def _ids(fields: dict[str, str], pid: int) -> tuple[int, int]:
    try:
        return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])
    except (KeyError, IndexError, ValueError):
        raise CallerGone(f"caller pid {pid}: unreadable status") from None


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
        except OSError as e:
            raise NamespaceError(f"cannot read /proc/{pid}/ns/{ns}: {e.strerror}") from None
    return out


def _read(path: str) -> str:
    with open(path) as f:
        return f.read(65536)


def read_caller(pid: int, *, want_environ: bool, pidfd: int | None = None) -> CallerInfo:
    """Parent, host namespaces, root: pin (or take the thin client's pin of) the caller and
    read it. The returned CallerInfo owns an open pidfd (a dup of `pidfd` when one is given)."""
    try:
        return _read_caller(pid, want_environ=want_environ, given=pidfd)
    except PinError as e:
        raise CallerGone(str(e)) from None
    except OSError as e:  # whatever /proc says (EACCES, ESRCH, ...) is a reason, never a crash
        raise CallerGone(f"caller pid {pid}: {e.strerror or e}") from None


def _read_caller(pid: int, *, want_environ: bool, given: int | None) -> CallerInfo:
    if given is None:
        pidfd, tgid = pin(pid)
    else:
        pidfd = os.dup(given)
        tgid = fd_pid(pidfd)
        if tgid not in (pid, thread_group(pid)):
            os.close(pidfd)
            raise CallerGone(f"the pinned caller is pid {tgid}, the key names pid {pid}")
    try:
        base = f"/proc/{tgid}"
        try:
            uid, gid = _ids(_status_fields(_read(f"{base}/status")), tgid)
            uid_map = IdMap.parse(_read(f"{base}/uid_map"))
            gid_map = IdMap.parse(_read(f"{base}/gid_map"))
        except FileNotFoundError:
            raise CallerGone(f"caller pid {tgid} exited") from None
        environ, note = read_environ(tgid) if want_environ else (None, "not probed")
        inodes = ns_inodes(tgid)
        try:
            signal.pidfd_send_signal(pidfd, 0)  # still the same process?
        except ProcessLookupError:
            raise CallerGone(f"caller pid {tgid} exited while being read") from None
    except BaseException:
        os.close(pidfd)
        raise
    thread = pid if tgid != pid else None
    return CallerInfo(tgid, uid, gid, environ, note, inodes, uid_map, gid_map, pidfd, thread)
