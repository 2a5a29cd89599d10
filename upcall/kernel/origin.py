"""Decide whether a key was made by the kernel's CIFS client. Pure: no I/O.

`keyctl_describe` gives `type;uid;gid;perm;description`. A key that cifs.ko requests is
constructed under the kernel's spnego credentials: owner 0:0 and the default permission mask
for a key type without read/update (possessor view|search|link|setattr, user view). On kernels
without the CVE-2026-46243 fix a local user can create a `cifs.spnego` key with forged fields
(pid, uid, upcall_target): it is owned by that user and has a different mask, so it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BadDescription, ForeignKey

KEY_TYPE = "cifs.spnego"
# KEY_POS_VIEW|KEY_POS_SEARCH|KEY_POS_LINK|KEY_POS_SETATTR|KEY_USR_VIEW
KERNEL_PERM = 0x39010000


@dataclass(frozen=True)
class KeyInfo:
    type: str
    uid: int
    gid: int
    perm: int
    description: str


def parse_describe(raw: str) -> KeyInfo:
    """Split the describe string; the description itself contains ';' so split only 4 times."""
    parts = raw.split(";", 4)
    if len(parts) != 5:
        raise BadDescription(f"describe output has {len(parts)} fields, expected 5")
    ktype, uid, gid, perm, description = parts
    try:
        return KeyInfo(ktype, int(uid), int(gid), int(perm, 16), description)
    except ValueError as e:
        raise BadDescription(f"describe output is malformed: {raw[:80]!r}") from e


def check_origin(info: KeyInfo) -> None:
    """Raise ForeignKey unless this is a kernel-made cifs.spnego key."""
    if info.type != KEY_TYPE:
        raise ForeignKey(f"key type is {info.type!r}, not {KEY_TYPE}", hint="not a CIFS key")
    if info.uid != 0 or info.gid != 0:
        raise ForeignKey(f"key is owned by {info.uid}:{info.gid}, not the kernel's 0:0")
    if info.perm != KERNEL_PERM:
        raise ForeignKey(f"key permissions are {info.perm:08x}, not the kernel's {KERNEL_PERM:08x}")
