"""The directory changes one client, or a fleet of them, needs: a desired state to add to
what is there, independent of how it is applied. Every change is additive: bits are set
(never cleared), values and ACEs and members are added (never replaced).

Protocol transition (classic KCD): the client account gets TRUSTED_TO_AUTH_FOR_DELEGATION and
the target SPNs in msDS-AllowedToDelegateTo. RBCD: each file server's
msDS-AllowedToActOnBehalfOfOtherIdentity names the client, or a group the clients are members
of (fleet mode: the descriptor names the group once; adding a client is adding a member).
Samba's KDC still needs a forwardable S4U2Self ticket, so with ``ad.kdc: samba`` the client
also gets TRUSTED_TO_AUTH_FOR_DELEGATION. Protected users get NOT_DELEGATED.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import Code, ConfigError, Problem
from ..model import DEFAULT_RBCD_GROUP, Config, Delegation, KdcFlavor

UF_NOT_DELEGATED = 0x00100000
UF_TRUSTED_TO_AUTH_FOR_DELEGATION = 0x01000000


class Why(enum.Enum):
    PROTOCOL_TRANSITION = "the client may use protocol transition (S4U2Self, forwardable)"
    SAMBA_FORWARDABLE = "Samba's KDC needs forwardable S4U2Self evidence, even for RBCD"
    PROTECTED = "a protected user: the KDC must never issue delegated tickets for it"


@dataclass(frozen=True)
class SetUacBits:
    account: str  # sAMAccountName
    dn: str  # where it is expected; an export's DN wins
    bits: int
    why: Why


@dataclass(frozen=True)
class AddDelegateTo:
    account: str
    dn: str
    spns: tuple[str, ...]


@dataclass(frozen=True)
class EnsureGroup:
    name: str
    dn: str


@dataclass(frozen=True)
class AddMember:
    group: str
    group_dn: str
    member: str  # sAMAccountName
    member_dn: str


@dataclass(frozen=True)
class AddRbcdTrustee:
    account: str  # the file server's computer account
    dn: str
    hosts: tuple[str, ...]
    trustee: str  # sAMAccountName of the client or of the group
    trustee_dn: str
    trustee_sid: str | None = None  # known from the YAML (client.sid); else from an export


Change = SetUacBits | AddDelegateTo | EnsureGroup | AddMember | AddRbcdTrustee


@dataclass(frozen=True)
class ChangeSet:
    """One directory's changes, for one client or many; what the renderings print."""

    clients: tuple[str, ...]  # client principals with realm
    realm: str
    changes: tuple[Change, ...]

    def accounts(self) -> list[str]:
        """Every sAMAccountName the renderings read or change (for the export filter)."""
        out: dict[str, None] = {}
        for ch in self.changes:
            if isinstance(ch, SetUacBits | AddDelegateTo):
                out[ch.account] = None
            elif isinstance(ch, EnsureGroup):
                out[ch.name] = None
            elif isinstance(ch, AddMember):
                out[ch.group] = out[ch.member] = None
            else:
                out[ch.account] = out[ch.trustee] = None
        return list(out)


def target_hosts(c: Config) -> list[tuple[str, str]]:
    """(service class, host) pairs the client must be able to delegate to."""
    out = [("cifs", h) for h in c.smb.servers] if c.smb.impersonate else []
    if c.nfs and c.nfs.impersonate:
        out += [("nfs", h) for h in c.nfs.servers]
    return out


def _client_changes(c: Config, group: str | None) -> list[Change]:
    client = c.client.account
    client_dn = c.dn_of(client, c.ad.computers)
    out: list[Change] = []
    targets = target_hosts(c)
    if targets:
        if c.delegation is Delegation.PROTOCOL_TRANSITION:
            out.append(
                SetUacBits(
                    client, client_dn, UF_TRUSTED_TO_AUTH_FOR_DELEGATION, Why.PROTOCOL_TRANSITION
                )
            )
            out.append(AddDelegateTo(client, client_dn, tuple(f"{s}/{h}" for s, h in targets)))
        else:
            if c.ad.kdc is KdcFlavor.SAMBA:
                out.append(
                    SetUacBits(
                        client, client_dn, UF_TRUSTED_TO_AUTH_FOR_DELEGATION, Why.SAMBA_FORWARDABLE
                    )
                )
            if group:
                group_dn = c.dn_of(group, c.ad.users)
                out.append(EnsureGroup(group, group_dn))
                out.append(AddMember(group, group_dn, client, client_dn))
                trustee, trustee_dn, sid = group, group_dn, None
            else:
                trustee, trustee_dn, sid = client, client_dn, c.client.sid
            for host in dict.fromkeys(h for _, h in targets):
                acct = c.server_account(host)
                dn = c.dn_of(acct, c.ad.computers)
                out.append(AddRbcdTrustee(acct, dn, (host,), trustee, trustee_dn, sid))
    for u in c.protected_users:
        name = c.protected_principal(u).split("@", 1)[0]
        out.append(SetUacBits(name, c.dn_of(name, c.ad.users), UF_NOT_DELEGATED, Why.PROTECTED))
    return out


def _merge(changes: list[Change]) -> list[Change]:
    """One change per (kind, object): bits OR-ed, values and hosts unioned, file order kept."""
    merged: dict[tuple[object, ...], Change] = {}
    for ch in changes:
        if isinstance(ch, SetUacBits):
            key: tuple[object, ...] = ("uac", ch.account.lower(), ch.why)
            old = merged.get(key)
            merged[key] = ch if not isinstance(old, SetUacBits) else old
        elif isinstance(ch, AddDelegateTo):
            key = ("a2d", ch.account.lower())
            old = merged.get(key)
            spns = old.spns if isinstance(old, AddDelegateTo) else ()
            merged[key] = AddDelegateTo(ch.account, ch.dn, tuple(dict.fromkeys((*spns, *ch.spns))))
        elif isinstance(ch, EnsureGroup):
            merged.setdefault(("group", ch.name.lower()), ch)
        elif isinstance(ch, AddMember):
            merged.setdefault(("member", ch.group.lower(), ch.member.lower()), ch)
        else:
            key = ("rbcd", ch.account.lower(), ch.trustee.lower())
            old = merged.get(key)
            hosts = old.hosts if isinstance(old, AddRbcdTrustee) else ()
            merged[key] = AddRbcdTrustee(
                ch.account,
                ch.dn,
                tuple(dict.fromkeys((*hosts, *ch.hosts))),
                ch.trustee,
                ch.trustee_dn,
                ch.trustee_sid,
            )
    return list(merged.values())


def change_set(configs: Sequence[Config]) -> ChangeSet:
    """One change set for the directory from one or more clients' files. With RBCD and more
    than one client, the grant goes through a group (``ad.rbcd_group``, default
    ``cifs-upcall-clients``)."""
    if not configs:
        raise ConfigError([Problem(Code.MISSING_KEY, "no client file given")])
    first = configs[0]
    problems = []
    for c in configs[1:]:
        for what, a, b in (
            ("realm", first.realm, c.realm),
            ("ad.base_dn", first.base_dn, c.base_dn),
            ("ad.kdc", first.ad.kdc, c.ad.kdc),
        ):
            if a != b:
                problems.append(
                    Problem(Code.CONFLICT, f"{c.client_principal}: {what} {b} differs from {a}")
                )
    groups = {c.ad.rbcd_group for c in configs if c.ad.rbcd_group}
    if len(groups) > 1:
        problems.append(Problem(Code.CONFLICT, f"ad.rbcd_group differs: {sorted(groups)}"))
    principals = [c.client_principal for c in configs]
    if len(set(principals)) != len(principals):
        problems.append(Problem(Code.CONFLICT, "the same client appears twice"))
    if problems:
        raise ConfigError(problems)
    rbcd = any(c.delegation is Delegation.RBCD for c in configs)
    group = next(iter(groups), None) or (DEFAULT_RBCD_GROUP if rbcd and len(configs) > 1 else None)
    changes: list[Change] = []
    for c in configs:
        changes += _client_changes(c, group)
    return ChangeSet(tuple(principals), first.realm, tuple(_merge(changes)))
