"""Whom a worker becomes. Parent, host namespaces, root: decided before any fork.

The credential uid comes from the key; its login name and primary group from the HOST's NSS
(never a container's NSS as root). A worker that enters a foreign user namespace becomes the
ids that namespace maps the init ids to (cifs.upcall passes init ids to setuid after the
switch, which fails or names someone else).
"""

from __future__ import annotations

import pwd
from dataclasses import dataclass

from ..errors import PrivilegeDropError
from .procinfo import IDENTITY, IdMap

NOGROUP = 65534


@dataclass(frozen=True)
class Target:
    """Whom a worker becomes, in the ids of the user namespace it ends up in."""

    uid: int
    gid: int


@dataclass(frozen=True)
class Identity:
    uid: int  # init-namespace ids
    gid: int
    name: str | None  # login name from the host's NSS, if any


def resolve(uid: int, caller_uid: int | None, caller_gid: int | None) -> Identity:
    """Host NSS look-up; a uid unknown to the host takes the caller's gid when it is the
    caller's own uid, else nogroup (root's gid 0 for uid 0)."""
    try:
        pw = pwd.getpwuid(uid)
        return Identity(uid, pw.pw_gid, pw.pw_name)
    except KeyError:
        return for_caller(Identity(uid, NOGROUP if uid else 0, None), caller_uid, caller_gid)


def for_caller(ident: Identity, caller_uid: int | None, caller_gid: int | None) -> Identity:
    """`ident` (resolve()'s, made without the caller) once the caller is known: a uid the host
    does not know takes the caller's gid when it is the caller's own uid. No NSS look-up."""
    if ident.name is None and caller_gid is not None and caller_uid == ident.uid:
        return Identity(ident.uid, caller_gid, None)
    return ident


def target(ident: Identity, uid_map: IdMap = IDENTITY, gid_map: IdMap = IDENTITY) -> Target:
    """The ids to take inside the user namespace described by the maps."""
    uid = uid_map.to_inside(ident.uid)
    gid = gid_map.to_inside(ident.gid)
    if uid is None or gid is None:
        raise PrivilegeDropError(
            f"uid {ident.uid}/gid {ident.gid} is not mapped in the caller's user namespace",
            hint="the credential uid does not exist inside the caller's container",
        )
    return Target(uid, gid)
