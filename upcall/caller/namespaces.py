"""Which of the caller's namespaces a worker must enter. Pure.

All that differ from ours are entered at once by one setns(2) on the caller's pidfd
(boundary.enter), so the kernel applies them in its own safe order and the user namespace
cannot come too early. Namespaces identical to ours are skipped: a host caller costs no setns.
"""

from __future__ import annotations

from dataclasses import dataclass

# <linux/sched.h> CLONE_NEW* by the name /proc/PID/ns uses
_FLAGS = {
    "cgroup": 0x02000000,
    "ipc": 0x08000000,
    "uts": 0x04000000,
    "net": 0x40000000,
    "pid": 0x20000000,
    "time": 0x00000080,
    "mnt": 0x00020000,
    "user": 0x10000000,
}
ORDER = tuple(_FLAGS)
CLONE_NEWUSER = _FLAGS["user"]  # entering one restores the bounding set and securebits


@dataclass(frozen=True)
class NamespacePlan:
    enter: tuple[str, ...]

    @property
    def changes_user(self) -> bool:
        return "user" in self.enter

    @property
    def flags(self) -> int:
        """The CLONE_NEW* mask for setns(pidfd, flags)."""
        mask = 0
        for ns in self.enter:
            mask |= _FLAGS[ns]
        return mask


def plan(ours: dict[str, int], theirs: dict[str, int]) -> NamespacePlan:
    """Which of the caller's namespaces differ from ours."""
    return NamespacePlan(tuple(ns for ns in ORDER if ns in theirs and theirs[ns] != ours.get(ns)))
