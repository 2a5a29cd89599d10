"""LDIF for ``ldapmodify``/``ldbmodify``. Also a small parser for the same subset, used by
tests to check that what we write reads back to the same changes."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from ..model import Config
from . import security_descriptor as sd
from .changes import SetAllowedToDelegateTo, SetRbcd, SetUacFlag, plan

RBCD_ATTR = "msDS-AllowedToActOnBehalfOfOtherIdentity"


def _record(dn: str, attr: str, values: list[str], comment: list[str]) -> str:
    lines = [f"# {c}" for c in comment]
    lines += [f"dn: {dn}", "changetype: modify", f"replace: {attr}"]
    lines += [f"{attr}: {v}" if not v.startswith(":") else f"{attr}:{v}" for v in values]
    lines.append("-")
    return "\n".join(lines) + "\n"


def render(c: Config) -> str:
    out = [
        f"# Directory changes for {c.client_principal} ({c.delegation.value}).\n"
        "# DNs assume CN = account name; check with: "
        "ldbsearch -H <sam.ldb|ldap://dc> '(sAMAccountName=NAME)' dn\n",
    ]
    for ch in plan(c):
        if isinstance(ch, SetUacFlag):
            out.append(
                _record(
                    ch.dn,
                    "userAccountControl",
                    [str(ch.new_uac)],
                    [
                        f"{ch.account}: {ch.why.value}: flag 0x{ch.flag:08x}.",
                        f"LDIF replaces the whole value: assumes the current one is {ch.base_uac} "
                        f"(0x{ch.base_uac:x}); set ad.account_uac if not.",
                    ],
                )
            )
        elif isinstance(ch, SetAllowedToDelegateTo):
            out.append(
                _record(
                    ch.dn,
                    "msDS-AllowedToDelegateTo",
                    list(ch.spns),
                    [f"{ch.account} may delegate to exactly these services (replaces the list)."],
                )
            )
        elif isinstance(ch, SetRbcd):
            blob = base64.b64encode(sd.encode(ch.descriptor)).decode()
            out.append(
                _record(
                    ch.dn,
                    RBCD_ATTR,
                    [f": {blob}"],
                    [
                        f"{ch.host}: accept delegated tickets from {ch.client_account} (RBCD).",
                        f"SDDL: {sd.to_sddl(ch.descriptor)}",
                    ],
                )
            )
    return "\n".join(out)


@dataclass(frozen=True)
class Modify:
    dn: str
    op: str
    attr: str
    values: tuple[bytes, ...]


def parse(text: str) -> list[Modify]:
    """The subset we write: one ``replace`` per record, values plain or ``::`` base64."""
    out: list[Modify] = []
    dn = op = attr = ""
    values: list[bytes] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line == "-":
            out.append(Modify(dn, op, attr, tuple(values)))
            values = []
            continue
        key, _, rest = line.partition(":")
        if rest.startswith(":"):
            value = base64.b64decode(rest[1:].strip())
        else:
            value = rest.strip().encode()
        if key == "dn":
            dn = value.decode()
        elif key == "changetype":
            if value != b"modify":
                raise ValueError(f"unexpected changetype {value!r}")
        elif key in ("replace", "add", "delete"):
            op, attr = key, value.decode()
        elif key == attr:
            values.append(value)
        else:
            raise ValueError(f"unexpected LDIF line {line!r}")
    return out
