"""Raw layer: setns(2). Python 3.11 has no os.setns (3.12 does).

Given a pidfd (Linux 5.8+), one call enters every namespace named in `nstype` at once, of
exactly that process: nothing is reopened by number, so a recycled pid cannot be entered.
"""

from __future__ import annotations

from ._ffi import check, libc


def setns(fd: int, nstype: int) -> None:
    check(libc.setns(fd, nstype), "setns")
