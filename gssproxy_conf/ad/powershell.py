"""The same changes for the ActiveDirectory PowerShell module, additive and re-runnable:
flags through Set-ADAccountControl (one bit each), values through -Add of only the missing
ones, group members only when absent, and the RBCD list read, extended and written back
(``-PrincipalsAllowedToDelegateToAccount`` replaces the whole list)."""

from __future__ import annotations

from .changes import (
    UF_NOT_DELEGATED,
    UF_TRUSTED_TO_AUTH_FOR_DELEGATION,
    AddDelegateTo,
    AddMember,
    AddRbcdTrustee,
    ChangeSet,
    EnsureGroup,
    SetUacBits,
)


def _q(value: str) -> str:
    """A PowerShell single-quoted string."""
    return "'" + value.replace("'", "''") + "'"


def _principal(account: str) -> str:
    """Get-ADComputer for NAME$, Get-ADGroup otherwise (a fleet's RBCD group)."""
    cmd = "Get-ADComputer" if account.endswith("$") else "Get-ADGroup"
    return f"({cmd} -Identity {_q(account)})"


def render(cs: ChangeSet) -> str:
    lines = [
        f"# Directory changes for {', '.join(cs.clients)}. Re-runnable: only what is missing",
        "# is added; other bits, values and grants are kept.",
        "Import-Module ActiveDirectory",
        "$ErrorActionPreference = 'Stop'",
    ]
    for ch in cs.changes:
        if isinstance(ch, SetUacBits) and ch.bits == UF_TRUSTED_TO_AUTH_FOR_DELEGATION:
            lines.append(
                f"Set-ADAccountControl -Identity {_q(ch.account)} -TrustedToAuthForDelegation $true"
            )
        elif isinstance(ch, SetUacBits) and ch.bits == UF_NOT_DELEGATED:
            lines.append(
                f"Set-ADAccountControl -Identity {_q(ch.account)} -AccountNotDelegated $true"
            )
        elif isinstance(ch, AddDelegateTo):
            spns = ", ".join(_q(s) for s in ch.spns)
            lines += [
                f"$have = @((Get-ADComputer -Identity {_q(ch.account)} -Properties "
                "'msDS-AllowedToDelegateTo').'msDS-AllowedToDelegateTo')",
                f"$add = @(@({spns}) | Where-Object {{ $have -notcontains $_ }})",
                "if ($add.Count) { Set-ADComputer -Identity "
                f"{_q(ch.account)} -Add @{{'msDS-AllowedToDelegateTo' = $add}} }}",
            ]
        elif isinstance(ch, EnsureGroup):
            parent = ch.dn.split(",", 1)[1]
            lines.append(
                f"if (-not (Get-ADGroup -Filter \"sAMAccountName -eq '{ch.name}'\")) {{ "
                f"New-ADGroup -Name {_q(ch.name)} -SamAccountName {_q(ch.name)} "
                f"-GroupCategory Security -GroupScope Global -Path {_q(parent)} }}"
            )
        elif isinstance(ch, AddMember):
            lines += [
                f"$member = {_principal(ch.member)}",
                f"$sids = @(Get-ADGroupMember -Identity {_q(ch.group)} | "
                "ForEach-Object { $_.SID.Value })",
                "if ($sids -notcontains $member.SID.Value) { "
                f"Add-ADGroupMember -Identity {_q(ch.group)} -Members $member }}",
            ]
        elif isinstance(ch, AddRbcdTrustee):
            lines += [
                f"# {', '.join(ch.hosts)}: accept delegated tickets from {ch.trustee} (RBCD)",
                f"$trustee = {_principal(ch.trustee)}",
                f"$now = @((Get-ADComputer -Identity {_q(ch.account)} -Properties "
                "PrincipalsAllowedToDelegateToAccount).PrincipalsAllowedToDelegateToAccount)",
                "if ($now -notcontains $trustee.DistinguishedName) { Set-ADComputer -Identity "
                f"{_q(ch.account)} -PrincipalsAllowedToDelegateToAccount "
                "(@($now) + $trustee.DistinguishedName) }",
            ]
    return "\n".join(lines) + "\n"
