"""RBCD through gssproxy against Samba 4.22 (Debian trixie chroot): the file server's
msDS-AllowedToActOnBehalfOfOtherIdentity names CLIENT2$, which has no msDS-AllowedToDelegateTo.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.samba import SambaLab
from tests.lab.smb_client import smb_session
from tests.proxy_fixtures import Rig, gssproxy_rig
from tests.upcall_driver import caller, description, dry_run

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
