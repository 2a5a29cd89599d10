"""The directory changes a configuration needs, independent of how they are applied.

Protocol transition (classic KCD): the client account gets TRUSTED_TO_AUTH_FOR_DELEGATION and
lists the target SPNs in msDS-AllowedToDelegateTo. RBCD: each file server lists the client in
msDS-AllowedToActOnBehalfOfOtherIdentity; Samba's KDC still needs a forwardable S4U2Self
ticket, so the client also gets TRUSTED_TO_AUTH_FOR_DELEGATION there. Protected users get
NOT_DELEGATED, so the KDC itself refuses to hand out delegated tickets for them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..model import Config, Delegation, KdcFlavor
from . import security_descriptor as sd

UF_NOT_DELEGATED = 0x00100000
UF_TRUSTED_TO_AUTH_FOR_DELEGATION = 0x01000000


class Why(enum.Enum):
    PROTOCOL_TRANSITION = "the client may use protocol transition (S4U2Self, forwardable)"
    SAMBA_FORWARDABLE = "Samba's KDC needs forwardable S4U2Self evidence, even for RBCD"
    PROTECTED = "a protected user: the KDC must never issue delegated tickets for it"


@dataclass(frozen=True)
class SetUacFlag:
    account: str  # sAMAccountName
    dn: str
    flag: int
    base_uac: int  # assumed current value: LDIF can only replace the whole attribute
    why: Why

    @property
    def new_uac(self) -> int:
        return self.base_uac | self.flag


@dataclass(frozen=True)
class SetAllowedToDelegateTo:
    account: str
    dn: str
    spns: tuple[str, ...]


@dataclass(frozen=True)
class SetRbcd:
    account: str  # the file server's computer account
    dn: str
    host: str
    client_account: str
    descriptor: sd.Descriptor


Change = SetUacFlag | SetAllowedToDelegateTo | SetRbcd


def target_hosts(c: Config) -> list[tuple[str, str]]:
    """(service class, host) pairs the client must be able to delegate to."""
    out = [("cifs", h) for h in c.smb.servers] if c.smb.impersonate else []
    if c.nfs and c.nfs.impersonate:
        out += [("nfs", h) for h in c.nfs.servers]
    return out


def plan(c: Config) -> list[Change]:
    client = c.client.account
    client_dn = c.dn_of(client, c.ad.computers)
    out: list[Change] = []
    targets = target_hosts(c)
    if targets:
        if c.delegation is Delegation.PROTOCOL_TRANSITION:
            out.append(
                SetUacFlag(
                    client,
                    client_dn,
                    UF_TRUSTED_TO_AUTH_FOR_DELEGATION,
                    c.account_uac(client),
                    Why.PROTOCOL_TRANSITION,
                )
            )
            out.append(
                SetAllowedToDelegateTo(client, client_dn, tuple(f"{svc}/{h}" for svc, h in targets))
            )
        else:
            if c.ad.kdc is KdcFlavor.SAMBA:
                out.append(
                    SetUacFlag(
                        client,
                        client_dn,
                        UF_TRUSTED_TO_AUTH_FOR_DELEGATION,
                        c.account_uac(client),
                        Why.SAMBA_FORWARDABLE,
                    )
                )
            assert c.client.sid is not None  # the schema requires it for rbcd
            desc = sd.rbcd([c.client.sid, *c.ad.extra_rbcd_sids])
            for host in dict.fromkeys(h for _, h in targets):
                acct = c.server_account(host)
                out.append(SetRbcd(acct, c.dn_of(acct, c.ad.computers), host, client, desc))
    for u in c.protected_users:
        name = c.protected_principal(u).split("@", 1)[0]
        out.append(
            SetUacFlag(
                name,
                c.dn_of(name, c.ad.users),
                UF_NOT_DELEGATED,
                c.account_uac(name),
                Why.PROTECTED,
            )
        )
    return out
