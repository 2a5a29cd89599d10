"""What the directory holds now, read from an LDIF export (``ldbsearch`` or ``ldapsearch``
output) of the accounts a change set touches. The LDIF rendering adds only what is missing
and merges bit masks and descriptors with these values, so no other grant or bit is lost.

ldbsearch prints objectSid and the RBCD descriptor as text (SID, SDDL); ldapsearch prints them
base64-encoded (``attr::``). Both are read.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import Code, ConfigError, Location, Problem
from . import security_descriptor as sd

RBCD_ATTR = "msDS-AllowedToActOnBehalfOfOtherIdentity"
EXPORT_ATTRS = (
    "sAMAccountName",
    "objectSid",
    "userAccountControl",
    "msDS-AllowedToDelegateTo",
    RBCD_ATTR,
    "member",
)


@dataclass(frozen=True)
class Entry:
    dn: str
    account: str  # sAMAccountName as stored (Samba lower-cases computer names it creates)
    sid: str | None = None
    uac: int | None = None
    delegate_to: tuple[str, ...] = ()
    rbcd: sd.Descriptor | None = None
    members: tuple[str, ...] = ()  # DNs

    def has_member(self, dn: str) -> bool:
        return dn.lower() in {m.lower() for m in self.members}


@dataclass(frozen=True)
class Directory:
    entries: dict[str, Entry] = field(default_factory=dict)  # key: lower-case sAMAccountName

    def get(self, account: str) -> Entry | None:
        return self.entries.get(account.lower())


def _records(text: str) -> Iterable[tuple[int, list[tuple[str, bytes]]]]:
    """RFC 2849 content records: unfolded ``attr: value`` / ``attr:: base64`` pairs."""
    lines: list[tuple[int, str]] = []
    for no, raw in enumerate(text.splitlines(), start=1):
        if raw.startswith(" ") and lines:
            lines[-1] = (lines[-1][0], lines[-1][1] + raw[1:])
        else:
            lines.append((no, raw))
    start = 0
    attrs: list[tuple[str, bytes]] = []
    for no, line in [*lines, (0, "")]:
        if not line.strip():
            if attrs:
                yield start, attrs
            start, attrs = 0, []
            continue
        if line.startswith("#"):
            continue
        key, sep, rest = line.partition(":")
        if not sep:
            raise ValueError(f"line {no}: not 'attribute: value'")
        if rest.startswith(":"):
            value = base64.b64decode(rest[1:].strip(), validate=True)
        else:
            value = rest.strip().encode()
        start = start or no
        attrs.append((key.strip(), value))


def _sid(value: bytes) -> str:
    if value.startswith(b"S-1-"):
        return value.decode()
    return sd.decode_sid(value)[0]


def _descriptor(value: bytes) -> sd.Descriptor:
    if value.startswith(b"O:") or value.startswith(b"D:"):
        return sd.from_sddl(value.decode())
    return sd.decode(value)


def parse(text: str, path: str = "<export>") -> Directory:
    entries: dict[str, Entry] = {}
    try:
        for _line, attrs in _records(text):
            get = {k.lower(): [v for kk, v in attrs if kk.lower() == k.lower()] for k, _ in attrs}
            if "dn" not in get or "samaccountname" not in get:
                continue  # referrals, or entries the export filter did not ask for
            uac = get.get("useraccountcontrol")
            rbcd = get.get(RBCD_ATTR.lower())
            entry = Entry(
                dn=get["dn"][0].decode(),
                account=get["samaccountname"][0].decode(),
                sid=_sid(get["objectsid"][0]) if "objectsid" in get else None,
                uac=int(uac[0]) if uac else None,
                delegate_to=tuple(v.decode() for v in get.get("msds-allowedtodelegateto", [])),
                rbcd=_descriptor(rbcd[0]) if rbcd else None,
                members=tuple(v.decode() for v in get.get("member", [])),
            )
            entries[entry.account.lower()] = entry
    except (ValueError, UnicodeDecodeError, sd.DescriptorError) as exc:
        raise ConfigError(
            [Problem(Code.BAD_VALUE, f"not a usable LDIF export: {exc}", Location(path, 1))]
        ) from None
    return Directory(entries)


def search_filter(accounts: Iterable[str]) -> str:
    return "(|" + "".join(f"(sAMAccountName={a})" for a in accounts) + ")"


def export_commands(accounts: list[str], base_dn: str) -> list[str]:
    """How to make the export, from a DC (ldbsearch on sam.ldb) or over LDAP."""
    flt = search_filter(accounts)
    attrs = " ".join(EXPORT_ATTRS)
    return [
        f"ldbsearch -H /var/lib/samba/private/sam.ldb {shlex.quote(flt)} {attrs} > current.ldif",
        f"ldapsearch -LLL -Y GSSAPI -H ldap://DC -b {shlex.quote(base_dn)} {shlex.quote(flt)} "
        f"{attrs} > current.ldif",
    ]
