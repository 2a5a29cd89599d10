"""The same changes as ``samba-tool`` commands (run on the DC, or add ``-H ldap://dc -U ...``).
These set single flags and add single values, so unlike LDIF they keep other bits intact."""

from __future__ import annotations

import shlex

from ..model import Config
from .changes import (
    UF_NOT_DELEGATED,
    UF_TRUSTED_TO_AUTH_FOR_DELEGATION,
    SetAllowedToDelegateTo,
    SetRbcd,
    SetUacFlag,
    plan,
)


def commands(c: Config, extra: tuple[str, ...] = ()) -> list[list[str]]:
    out: list[list[str]] = []
    for ch in plan(c):
        if isinstance(ch, SetUacFlag) and ch.flag == UF_TRUSTED_TO_AUTH_FOR_DELEGATION:
            out.append(["samba-tool", "delegation", "for-any-protocol", ch.account, "on"])
        elif isinstance(ch, SetUacFlag) and ch.flag == UF_NOT_DELEGATED:
            out.append(["samba-tool", "user", "sensitive", ch.account, "on"])
        elif isinstance(ch, SetAllowedToDelegateTo):
            out += [["samba-tool", "delegation", "add-service", ch.account, spn] for spn in ch.spns]
        elif isinstance(ch, SetRbcd):
            out.append(["samba-tool", "delegation", "add-principal", ch.account, ch.client_account])
    return [[*cmd, *extra] for cmd in out]


def render(c: Config, extra: tuple[str, ...] = ()) -> str:
    lines = [
        "#!/bin/sh",
        "# Directory changes for " + c.client_principal + f" ({c.delegation.value}).",
        "set -e",
    ]
    if c.ad.extra_rbcd_sids:
        lines.append("# add-principal adds to the existing descriptor: the other SIDs stay.")
    lines += [shlex.join(cmd) for cmd in commands(c, extra)]
    return "\n".join(lines) + "\n"
