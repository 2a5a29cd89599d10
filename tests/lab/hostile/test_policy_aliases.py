"""One socket, two spellings (issue #8, case 9): the policy's one-kind-per-socket rule must
compare the socket's identity (st_dev, st_ino), not its spelling, or a deny-listed user's
own-keytab rule can point at the impersonating gssproxy service."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.lab.hostile import _attacks as A
from tests.proxy_fixtures import Rig, proxy_upcall

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("spelling", ["double-slash", "dot-segment", "symlinked-dir"])
def test_socket_alias_cannot_route_a_denied_user_to_impersonation(
    pt_rig: Rig, tmp_world: Path, spelling: str
) -> None:
    """ATTACK: defaults impersonate on the rig's socket spelled one way; bob (deny_users) has a
    `proxy: own-keytab` rule on the same socket spelled another way. Secure: the policy is
    refused (bad-policy) and bob is never impersonated (no gssproxy connection, no S4U)."""
    rig, lab = pt_rig, pt_rig.lab
    sock = rig.socket
    link_dir = None
    if spelling == "double-slash":
        alias = f"{sock.parent}//{sock.name}"
    elif spelling == "dot-segment":
        alias = f"{sock.parent}/./{sock.name}"
    else:
        link_dir = Path(tempfile.mkdtemp(prefix="cup-alias-", dir="/tmp"))
        (link_dir / "d").symlink_to(sock.parent)
        alias = f"{link_dir}/d/{sock.name}"
    try:
        policy = rig.write_policy(
            f"alias-{spelling}.yaml",
            "version: 1\n"
            f"defaults: {{mode: local-first, socket: '{alias}', proxy: impersonate}}\n"
            "deny_users: [bob]\n"
            "rules:\n"
            f"  - {{match: {{users: [bob]}}, mode: proxy-only, socket: '{sock}', "
            "proxy: own-keytab}\n",
        )
        goff, koff = rig.log_offset(), lab.kdc_log_offset()
        r = proxy_upcall(rig, "bob", tmp_world, policy=policy)
        kdc = lab.kdc_log_since(koff)
    finally:
        if link_dir:
            A.rmtree(link_dir)
    assert r.doc["principal"] != "bob@LAB.TEST" and r.doc["outcome"] == "failed", r.doc
    assert rig.connections_since(goff) == 0, rig.log_since(goff)
    assert "impersonatee=" not in kdc, kdc
    assert r.doc["reason"] == "bad-policy", r.doc
