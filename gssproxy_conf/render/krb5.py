"""krb5.conf.d snippet: forwardable tickets for S4U, and local-user name mappings.

MIT reads it only if /etc/krb5.conf has ``includedir /etc/krb5.conf.d/`` (Debian 12's default
file does not); the first value of a relation wins, so the main file can override it.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from ..model import Config, Delegation, KdcFlavor
from .rendered import Kind, Rendered

KRB5_FILE = PurePosixPath("/etc/krb5.conf.d/cifs-upcall.conf")


def wants_forwardable(c: Config) -> bool:
    # Protocol transition needs forwardable evidence; Samba's KDC wants it for RBCD too.
    return c.delegation is Delegation.PROTOCOL_TRANSITION or c.ad.kdc is KdcFlavor.SAMBA


def name_map(c: Config) -> dict[str, list[tuple[str, str]]]:
    """realm -> [(principal name without realm, local account)] in file order."""
    out: dict[str, list[tuple[str, str]]] = {}
    for u in c.local_users:
        name, _, realm = u.principal.rpartition("@")
        out.setdefault(realm, []).append((name, u.name))
    return out


def render(c: Config) -> list[Rendered]:
    lines = ["# Needs 'includedir /etc/krb5.conf.d/' in /etc/krb5.conf."]
    if wants_forwardable(c):
        lines += ["[libdefaults]", "    forwardable = true"]
    # opt-in: auth_to_local_names also decides which local account a GSSAPI login (ssh) as
    # that principal may use
    mapping = name_map(c) if c.auth_to_local_names else {}
    if mapping:
        lines.append("[realms]")
        for realm, pairs in mapping.items():
            lines += [f"    {realm} = {{", "        auth_to_local_names = {"]
            lines += [f"            {name} = {local}" for name, local in pairs]
            lines += ["        }", "    }"]
    if len(lines) == 1:
        return []
    return [Rendered(KRB5_FILE, "\n".join(lines) + "\n", Kind.KRB5)]
