"""Enter the caller's namespaces (cifs.upcall's CVE-2021-20208 / CVE-2025-2312 behaviour).

Order as cifs.upcall: cgroup, ipc, uts, net, pid, time, mnt, and user last (entering a user
namespace gives up our privilege in the init namespace, so everything else must come first).
Namespaces identical to ours are skipped: the common host caller needs no setns at all, and
pyroute2 (200 ms to import) is loaded only when the network namespace really differs.
Must run in a single-threaded, freshly forked child: setns into mnt/user requires it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import _setns
from .errors import NamespaceError

_FLAGS = {
    "cgroup": _setns.CLONE_NEWCGROUP,
    "ipc": _setns.CLONE_NEWIPC,
    "uts": _setns.CLONE_NEWUTS,
    "net": _setns.CLONE_NEWNET,
    "pid": _setns.CLONE_NEWPID,
    "time": _setns.CLONE_NEWTIME,
    "mnt": _setns.CLONE_NEWNS,
    "user": _setns.CLONE_NEWUSER,
}
ORDER = tuple(_FLAGS)


@dataclass(frozen=True)
class NamespacePlan:
    enter: tuple[str, ...]

    @property
    def changes_user(self) -> bool:
        return "user" in self.enter


def plan(ours: dict[str, int], theirs: dict[str, int]) -> NamespacePlan:
    """Which of the caller's namespaces differ from ours, in the order they must be entered."""
    return NamespacePlan(tuple(ns for ns in ORDER if ns in theirs and theirs[ns] != ours.get(ns)))


def open_fds(pid: int, p: NamespacePlan) -> dict[str, int]:
    """Open every namespace first: after entering mnt, /proc/<pid> may no longer be reachable."""
    fds: dict[str, int] = {}
    try:
        for ns in p.enter:
            fds[ns] = os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        for fd in fds.values():
            os.close(fd)
        raise NamespaceError(f"cannot open /proc/{pid}/ns: {e.strerror}") from e
    return fds


def enter(fds: dict[str, int]) -> None:
    try:
        for ns in ORDER:
            if ns not in fds:
                continue
            try:
                if ns == "net":
                    from pyroute2 import netns

                    netns.setns(fds[ns], flags=0)
                else:
                    _setns.setns(fds[ns], _FLAGS[ns])
            except OSError as e:
                raise NamespaceError(f"setns({ns}) failed: {e.strerror or e}") from e
    finally:
        for fd in fds.values():
            os.close(fd)
    if "mnt" in fds:
        os.chdir("/")
