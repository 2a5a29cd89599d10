"""The same changes for the ActiveDirectory PowerShell module. The RBCD value is built from
the same SDDL as the LDIF, so all three renderings grant exactly the same thing."""

from __future__ import annotations

from ..model import Config
from . import security_descriptor as sd
from .changes import (
    UF_NOT_DELEGATED,
    UF_TRUSTED_TO_AUTH_FOR_DELEGATION,
    SetAllowedToDelegateTo,
    SetRbcd,
    SetUacFlag,
    plan,
)


def _q(value: str) -> str:
    """A PowerShell single-quoted string."""
    return "'" + value.replace("'", "''") + "'"


def render(c: Config) -> str:
    lines = [
        f"# Directory changes for {c.client_principal} ({c.delegation.value}).",
        "Import-Module ActiveDirectory",
        "$ErrorActionPreference = 'Stop'",
    ]
    for ch in plan(c):
        if isinstance(ch, SetUacFlag) and ch.flag == UF_TRUSTED_TO_AUTH_FOR_DELEGATION:
            lines.append(
                f"Set-ADAccountControl -Identity {_q(ch.account)} -TrustedToAuthForDelegation $true"
            )
        elif isinstance(ch, SetUacFlag) and ch.flag == UF_NOT_DELEGATED:
            lines.append(
                f"Set-ADAccountControl -Identity {_q(ch.account)} -AccountNotDelegated $true"
            )
        elif isinstance(ch, SetAllowedToDelegateTo):
            spns = ",".join(_q(s) for s in ch.spns)
            lines.append(
                f"Set-ADComputer -Identity {_q(ch.account)} "
                f"-Replace @{{'msDS-AllowedToDelegateTo' = @({spns})}}"
            )
        elif isinstance(ch, SetRbcd):
            lines += [
                f"# {ch.host}: accept delegated tickets from {ch.client_account} (RBCD)",
                "$sd = New-Object System.Security.AccessControl.RawSecurityDescriptor "
                f"-ArgumentList {_q(sd.to_sddl(ch.descriptor))}",
                "$bytes = New-Object byte[] ($sd.BinaryLength)",
                "$sd.GetBinaryForm($bytes, 0)",
                f"Set-ADComputer -Identity {_q(ch.account)} "
                "-Replace @{'msDS-AllowedToActOnBehalfOfOtherIdentity' = $bytes}",
            ]
    return "\n".join(lines) + "\n"
