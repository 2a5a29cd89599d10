"""LDIF for ``ldbmodify``/``ldapmodify``, rendered against an export of the directory's current
values (``directory``): it sets only the missing userAccountControl bits (the replace carries
the current value OR the bits), adds only missing values, and merges the RBCD descriptor with
the current one. Applied twice it changes nothing the second time; with the permissive-modify
control (``PERMISSIVE_MODIFY``) an add of a value that is already there is not an error, so
the same file can be applied again and exits 0.

Also a small parser for the same subset, used by tests to read back what we write.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from ..errors import Code, ConfigError, Problem
from . import security_descriptor as sd
from .changes import (
    AddDelegateTo,
    AddMember,
    AddRbcdTrustee,
    ChangeSet,
    EnsureGroup,
    SetUacBits,
)
from .directory import RBCD_ATTR, Directory, Entry, export_commands

PERMISSIVE_MODIFY = "1.2.840.113556.1.4.1413"  # LDAP_SERVER_PERMISSIVE_MODIFY_OID
APPLY_HINT = (
    "# Apply with: ldbmodify --controls=permissive_modify:0 "
    "-H /var/lib/samba/private/sam.ldb FILE\n"
    f"#         or: ldapmodify -Y GSSAPI -H ldap://DC -e {PERMISSIVE_MODIFY} -f FILE\n"
)


def _record(dn: str, op: str, attr: str, values: list[str], comment: list[str]) -> str:
    lines = [f"# {c}" for c in comment]
    lines += [f"dn: {dn}", "changetype: modify", f"{op}: {attr}"]
    lines += [f"{attr}:{v}" if v.startswith(":") else f"{attr}: {v}" for v in values]
    lines.append("-")
    return "\n".join(lines) + "\n"


def _missing(cs: ChangeSet, state: Directory) -> list[Problem]:
    groups = {ch.name for ch in cs.changes if isinstance(ch, EnsureGroup)}
    out = []
    for account in cs.accounts():
        if state.get(account) is not None:
            continue
        msg = f"{account} is not in the export"
        if account in groups:  # its SID goes into the descriptors, so it must exist first
            msg += (
                f": create the group first (samba-tool group add {account}, or the samba-tool "
                "or PowerShell rendering), then export again"
            )
        out.append(Problem(Code.MISSING_KEY, msg))
    return out


def render(cs: ChangeSet, state: Directory, base_dn: str) -> str:
    """The records that take ``state`` to ``state`` + ``cs``; raise ConfigError if the export
    lacks an account the change set needs."""
    problems = _missing(cs, state)
    if problems:
        cmds = export_commands(cs.accounts(), base_dn)
        problems.append(
            Problem(Code.MISSING_KEY, "export every account first, e.g.: " + " | or: ".join(cmds))
        )
        raise ConfigError(problems)
    out = [
        f"# Directory changes for {', '.join(cs.clients)}, against the exported current values.\n"
        + APPLY_HINT,
    ]
    uac: dict[str, int] = {}  # account -> value after the records so far
    for ch in cs.changes:
        if isinstance(ch, SetUacBits):
            e = _entry(state, ch.account)
            before = uac.get(e.account.lower(), e.uac if e.uac is not None else 0)
            if before & ch.bits == ch.bits:
                continue
            after = before | ch.bits
            uac[e.account.lower()] = after
            out.append(
                _record(
                    e.dn,
                    "replace",
                    "userAccountControl",
                    [str(after)],
                    [
                        f"{e.account}: {ch.why.value}: set bit 0x{ch.bits:08x}, keep the others "
                        f"({before} -> {after})."
                    ],
                )
            )
        elif isinstance(ch, AddDelegateTo):
            e = _entry(state, ch.account)
            have = {s.lower() for s in e.delegate_to}
            new = [s for s in ch.spns if s.lower() not in have]
            if new:
                out.append(
                    _record(
                        e.dn,
                        "add",
                        "msDS-AllowedToDelegateTo",
                        new,
                        [f"{e.account} may also delegate to these services (added)."],
                    )
                )
        elif isinstance(ch, EnsureGroup):
            continue  # _missing made sure it exists (its SID goes into the descriptors)
        elif isinstance(ch, AddMember):
            g, m = _entry(state, ch.group), _entry(state, ch.member)
            if not g.has_member(m.dn):
                out.append(
                    _record(
                        g.dn,
                        "add",
                        "member",
                        [m.dn],
                        [f"{m.account} joins {g.account}, the group the file servers trust."],
                    )
                )
        elif isinstance(ch, AddRbcdTrustee):
            e, t = _entry(state, ch.account), _entry(state, ch.trustee)
            sid = t.sid or ch.trustee_sid
            if sid is None:
                raise ConfigError(
                    [Problem(Code.MISSING_KEY, f"the export has no objectSid for {t.account}")]
                )
            merged = sd.with_trustee(e.rbcd, sid)
            if merged is None:
                continue
            blob = base64.b64encode(sd.encode(merged)).decode()
            kept = len(e.rbcd.dacl) if e.rbcd else 0
            out.append(
                _record(
                    e.dn,
                    "replace",
                    RBCD_ATTR,
                    [f": {blob}"],
                    [
                        f"{', '.join(ch.hosts)}: accept delegated tickets from {t.account} (RBCD); "
                        f"the current descriptor's {kept} ACE(s) are kept.",
                        f"SDDL: {sd.to_sddl(merged)}",
                    ],
                )
            )
    if len(out) == 1:
        out.append("# Nothing to change: the directory already has all of it.\n")
    return "\n".join(out)


def _entry(state: Directory, account: str) -> Entry:
    e = state.get(account)
    assert e is not None  # _missing checked every account
    return e


def render_for(cs: ChangeSet, state: Directory | None, base_dn: str) -> str:
    if state is None:
        cmds = export_commands(cs.accounts(), base_dn)
        raise ConfigError(
            [
                Problem(
                    Code.MISSING_KEY,
                    "the LDIF rendering needs the directory's current values (--current "
                    "EXPORT): LDIF cannot set one bit of userAccountControl or add one ACE to a "
                    "descriptor. Export them with: " + " | or: ".join(cmds),
                )
            ]
        )
    return render(cs, state, base_dn)


@dataclass(frozen=True)
class Modify:
    dn: str
    op: str
    attr: str
    values: tuple[bytes, ...]


def parse(text: str) -> list[Modify]:
    """The subset we write: one operation per record, values plain or ``::`` base64."""
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
