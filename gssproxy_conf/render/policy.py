"""The helper's policy file (YAML). Its schema belongs to the helper (upcall/policy/parse.py);
everything that knows that schema on the generator side is in this module, so it can follow changes.

Shape rendered::

    version: 1
    defaults: {mode, min_uid, deadline}
    deny_users: [root, <protected users>]     # never impersonated
    deny_groups: [<deny_groups>]              # members never impersonated (host NSS groups)
    principal_map: {local account: principal}
    rules:                                    # first match wins
      - {match: {servers, realm, users, uids}, mode, socket, proxy: own-keytab}  # per protected
      - {match: {servers, realm, users, uids}, mode, socket, proxy: impersonate} # local_users
      - {match: {servers, realm}, mode, socket, proxy: impersonate}              # everyone else

A protected user's rule points at their own gssproxy service (``client_keytab`` with their
key, no ``impersonate``): ``proxy: own-keytab`` tells the helper that this is their own
credential, not impersonation, so deny_users does not keep them from it; deny_users still keeps
every impersonating rule away from them.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..model import Config, Mode, ProxyKind
from .rendered import Kind, Rendered

POLICY_VERSION = 1


def policy_data(c: Config) -> dict[str, Any]:
    servers = list(c.smb.servers)
    rules: list[dict[str, Any]] = []
    for u in c.protected_users:
        # their own keytab, through their own gssproxy service; never the impersonating one
        rules.append(
            {
                "match": {
                    "servers": servers,
                    "realm": c.realm,
                    "users": [u.name],
                    "uids": [str(u.uid)],
                },
                "mode": c.smb.policy.value,
                "socket": str(c.protected_socket(u)),
                "proxy": ProxyKind.OWN_KEYTAB.value,
            }
        )
    general: dict[str, Any] = {"match": {"servers": servers, "realm": c.realm}}
    if c.smb.impersonate:
        general.update(
            mode=c.smb.policy.value, socket=str(c.smb.socket), proxy=ProxyKind.IMPERSONATE.value
        )
    else:
        general["mode"] = Mode.LOCAL_ONLY.value
    if c.local_users:
        # the mapped accounts, spelled out for the reader; min_uid still applies to them (a
        # hard limit in the helper: schema.warnings flags entries below it)
        mapped = dict(general)
        mapped["match"] = {
            **general["match"],
            "users": [u.name for u in c.local_users],
            "uids": [str(u.uid) for u in c.local_users],
        }
        rules.append(mapped)
    rules.append(general)
    return {
        "version": POLICY_VERSION,
        "defaults": {
            "mode": c.smb.policy.value,
            "min_uid": c.smb.min_uid,
            "deadline": c.smb.deadline,
        },
        "deny_users": ["root", *(u.name for u in c.protected_users)],
        **({"deny_groups": list(c.deny_groups)} if c.deny_groups else {}),
        "principal_map": {u.name: u.principal for u in c.local_users},
        "rules": rules,
    }


class _NoAliasDumper(yaml.SafeDumper):
    """Repeated lists (the server list in every rule) are written out, not as &anchors."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def render(c: Config) -> list[Rendered]:
    body = yaml.dump(
        policy_data(c), Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False, width=100
    )
    header = "# Policy for cifs-upcall (see its documentation). First matching rule wins.\n"
    text = header + body
    # The helper's own parser reads what we wrote: the schema has one owner, and a drift
    # between the two sides is a generator bug found here, never on a client.
    from upcall.errors import BadPolicy
    from upcall.policy.file import parse

    try:
        parse(text, str(c.helper.policy))
    except BadPolicy as e:
        raise AssertionError(f"generated policy rejected by cifs-upcall: {e}") from None
    return [Rendered(c.helper.policy, text, Kind.POLICY)]
