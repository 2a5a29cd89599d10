"""Become the user before touching any of the user's files.

setgroups([]) before any namespace switch, then setresgid -> setresuid, verified: after this
the process cannot regain root (no saved uid 0; the kernel clears capabilities on the change).
The ids are init-namespace ids; inside a foreign user namespace they are translated through
the caller's uid_map/gid_map (cifs.upcall passes init ids to setuid after the switch).
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from .errors import PrivilegeDropError
from .procinfo import IDENTITY, CallerInfo, IdMap

NOGROUP = 65534


@dataclass(frozen=True)
class Identity:
    uid: int  # init-namespace ids
    gid: int
    name: str | None  # login name from the host's NSS, if any


def resolve(uid: int, caller: CallerInfo | None) -> Identity:
    """Host NSS look-up (done before entering any namespace: never a container's NSS as root)."""
    try:
        pw = pwd.getpwuid(uid)
        return Identity(uid, pw.pw_gid, pw.pw_name)
    except KeyError:
        if caller is not None and caller.uid == uid:
            return Identity(uid, caller.gid, None)
        return Identity(uid, NOGROUP if uid else 0, None)


def clear_groups() -> None:
    """Drop root's supplementary groups while still in the init user namespace: a foreign user
    namespace may forbid setgroups (setgroups=deny), and kgid 0 must not travel into it."""
    try:
        os.setgroups([])
    except OSError as e:
        raise PrivilegeDropError(f"cannot drop supplementary groups: {e.strerror}") from e


def become(ident: Identity, uid_map: IdMap = IDENTITY, gid_map: IdMap = IDENTITY) -> None:
    uid = uid_map.to_inside(ident.uid)
    gid = gid_map.to_inside(ident.gid)
    if uid is None or gid is None:
        raise PrivilegeDropError(
            f"uid {ident.uid}/gid {ident.gid} is not mapped in the caller's user namespace",
            hint="the credential uid does not exist inside the caller's container",
        )
    try:
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        raise PrivilegeDropError(f"cannot become uid {uid}: {e.strerror}") from e
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise PrivilegeDropError("ids did not change as asked")
