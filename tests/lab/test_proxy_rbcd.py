"""RBCD through gssproxy against Samba 4.22 (Debian trixie chroot): the file server's
msDS-AllowedToActOnBehalfOfOtherIdentity names CLIENT2$, which has no msDS-AllowedToDelegateTo.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.components.samba import SambaLab
from tests.components.smb_client import smb_session
from tests.proxy_fixtures import Rig, gssproxy_rig
from tests.upcall_driver import DryRun, caller, description, dry_run

pytestmark = [pytest.mark.lab, pytest.mark.rbcd]


@pytest.fixture(scope="module")
def rbcd_rig(samba_rbcd_lab: SambaLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    lab = samba_rbcd_lab
    with gssproxy_rig(lab, "CLIENT2$", lab.base / "client2.keytab",
                      tmp_path_factory.mktemp("rbcd")) as rig:  # fmt: skip
        yield rig


def _upcall(rig: Rig, work: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    lab = rig.lab
    monkeypatch.setenv("KRB5_CONFIG", str(lab.krb5_conf))
    with caller(lab, "alice2", lab.env(KRB5CCNAME=f"FILE:{work}/none")) as pid:
        return dry_run(lab, description(lab, lab.users["alice2"].uid, pid), work,
                       "--policy", str(rig.policy))  # fmt: skip


def test_rbcd_impersonation_reaches_the_share(
    rbcd_rig: Rig, tmp_world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = rbcd_rig.lab
    dc = f"{lab.hostname.upper()}$"
    attrs = lab.samba_tool("computer", "show", "CLIENT2").stdout
    assert "msDS-AllowedToDelegateTo" not in attrs  # RBCD only: no classic KCD list
    off = lab.kdc_log_offset()
    r = _upcall(rbcd_rig, tmp_world, monkeypatch)
    assert r.doc["reason"] == "s4u2proxy-refused", r.doc  # no grant yet
    assert "reason=Constrained delegation not allowed" in lab.kdc_log_since(off)

    lab.samba_tool("delegation", "add-principal", dc, "CLIENT2$")
    try:
        off = lab.kdc_log_offset()
        r = _upcall(rbcd_rig, tmp_world, monkeypatch)
        assert r.ok and (r.doc["source"], r.doc["principal"]) == ("proxy", "alice2@RBCD.TEST")
        kdc = lab.kdc_log_since(off)
        assert any("impersonatee=alice2@" in ln and "SUCCESS" in ln for ln in kdc.splitlines())
        assert r.msg is not None
        # server-side proof: smbd's authorization record for this connection (server_owner's
        # wbinfo cannot reach the chroot DC's winbindd, so no file-owner check here)
        s = smb_session(lab, r.msg.blob, r.msg.session_key)
        assert s.tree_connect_signed and s.content == b"hello from lab share\n"
        assert s.server_user == "alice2"
    finally:
        lab.samba_tool("delegation", "del-principal", dc, "CLIENT2$", check=False)


def test_protected_users_member_needs_the_policy_deny_list_on_4_22(
    rbcd_rig: Rig, tmp_world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Samba's KDC (4.17 and 4.22 alike) issues a forwardable S4U2Self ticket for a Protected
    Users member, so RBCD impersonates it: the KDC is no guard. The policy's deny list is, and
    it keeps such a user away from gssproxy altogether."""
    lab = rbcd_rig.lab
    dc = f"{lab.hostname.upper()}$"
    lab.samba_tool("delegation", "add-principal", dc, "CLIENT2$")
    lab.samba_tool("group", "addmembers", "Protected Users", "bob2")
    monkeypatch.setenv("KRB5_CONFIG", str(lab.krb5_conf))
    bob2 = lab.users["bob2"]

    def upcall(policy: Path) -> DryRun:
        with caller(lab, "bob2", lab.env(KRB5CCNAME=f"FILE:{tmp_world}/none")) as pid:
            return dry_run(lab, description(lab, bob2.uid, pid), tmp_world, "--policy", str(policy))

    try:
        off = lab.kdc_log_offset()
        r = upcall(rbcd_rig.policy)
        kdc = lab.kdc_log_since(off)
        assert r.ok and r.doc["impersonated"], r.doc  # the KDC let it through (Samba's gap)
        assert "impersonatee=bob2@RBCD.TEST" in kdc
        members = lab.samba_tool("group", "listmembers", "Protected Users").stdout.split()
        assert "bob2" in members

        doc = yaml.safe_load(rbcd_rig.policy.read_text())
        doc["deny_users"] = [*doc.get("deny_users", []), "bob2"]
        denied = rbcd_rig.write_policy("deny-bob2.yaml", yaml.safe_dump(doc))
        gp_off, kdc_off = rbcd_rig.log_offset(), lab.kdc_log_offset()
        r = upcall(denied)
        assert not r.ok and r.doc["reason"] == "policy-denied", r.doc
        assert "deny" in r.doc["hint"]
        assert rbcd_rig.connections_since(gp_off) == 0  # gssproxy never contacted
        assert "impersonatee=" not in lab.kdc_log_since(kdc_off)
    finally:
        lab.samba_tool("group", "removemembers", "Protected Users", "bob2", check=False)
        lab.samba_tool("delegation", "del-principal", dc, "CLIENT2$", check=False)
