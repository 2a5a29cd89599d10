"""Proof that the RBCD lab DC (Samba 4.22 in a trixie chroot) honours resource-based constrained
delegation, using the host's MIT tools inside netns cuplab2.

CLIENT2$ has TRUSTED_TO_AUTH_FOR_DELEGATION (Samba's KDC needs a forwardable S4U2Self evidence
ticket even for RBCD) and no msDS-AllowedToDelegateTo, so any S4U2Proxy success can only come
from msDS-AllowedToActOnBehalfOfOtherIdentity on DC2$.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.components.samba import SambaLab

pytestmark = pytest.mark.rbcd

RBCD_ATTR = "msDS-AllowedToActOnBehalfOfOtherIdentity"


def _tool_out(res: subprocess.CompletedProcess[str]) -> str:
    return res.stdout + res.stderr


@pytest.fixture
def client2_cc(samba_rbcd_lab: SambaLab, tmp_path: Path) -> str:
    """A ccache with CLIENT2$'s TGT from its keytab."""
    lab = samba_rbcd_lab
    cc = f"FILE:{tmp_path}/cc.client2"
    lab.run(
        ["kinit", "-k", "-t", str(lab.base / "client2.keytab"), f"CLIENT2$@{lab.realm}"],
        env=lab.env(KRB5CCNAME=cc),
    )
    return cc


@pytest.fixture
def rbcd_grant(samba_rbcd_lab: SambaLab) -> Iterator[None]:
    """Cleanup guard: whatever a test does, DC2$ carries no RBCD grant afterwards."""
    yield
    lab = samba_rbcd_lab
    if _client2_may_act_for_users_to_dc2(lab):
        lab.samba_tool("delegation", "del-principal", "DC2$", "CLIENT2$")


def _client2_may_act_for_users_to_dc2(lab: SambaLab) -> bool:
    """Whether DC2$'s RBCD security descriptor names CLIENT2$.

    After `del-principal` the attribute stays, with an empty DACL (`O:BAD:`), so test the entry,
    not the attribute's presence.
    """
    out = lab.samba_tool("delegation", "show", "DC2$").stdout
    return any(
        ln.startswith(f"{RBCD_ATTR}:") and "cn=client2," in ln.lower() for ln in out.splitlines()
    )


def _s4u(lab: SambaLab, cc: str, out: Path, user: str = "alice2") -> tuple[bool, str, str]:
    """kvno -U user -P cifs/dc2: S4U2Self then S4U2Proxy. Returns (ok, tool output, KDC log)."""
    off = lab.kdc_log_offset()
    res = lab.run(
        ["kvno", "-U", user, "-P", f"cifs/{lab.fqdn}", "--out-cache", f"FILE:{out}"],
        env=lab.env(KRB5CCNAME=cc),
        check=False,
    )
    return res.returncode == 0, _tool_out(res), lab.kdc_log_since(off)


def _proxy_lines(log: str, user: str, realm: str) -> list[str]:
    """The KDC's TGS-REQ lines for the S4U2Proxy leg (impersonating `user` to cifs/...)."""
    return [
        ln
        for ln in log.splitlines()
        if "TGS-REQ" in ln and "cifs/" in ln and f"{user}@{realm}" in ln
    ]


def test_dc_is_samba_4_22_from_the_chroot(samba_rbcd_lab: SambaLab) -> None:
    lab = samba_rbcd_lab
    assert lab.chroot is not None
    res = subprocess.run(
        ["chroot", str(lab.chroot), "samba", "--version"], capture_output=True, text=True
    )
    assert re.match(r"Version 4\.2[2-9]\.", res.stdout), res.stdout + res.stderr
    # The running master is the chroot's binary, in netns cuplab2.
    exe = Path(f"/proc/{lab.pid}/exe").resolve()
    root = Path(f"/proc/{lab.pid}/root").resolve()
    assert root == lab.chroot.resolve(), (root, exe)
    # The shared cached root is read-only for the DC (mountinfo paths are relative to its root).
    root_opts = [
        f[5]
        for f in map(str.split, Path(f"/proc/{lab.pid}/mountinfo").read_text().splitlines())
        if f[4] == "/"
    ]
    assert root_opts and root_opts[-1].split(",")[0] == "ro", root_opts
    assert lab.port_open(88) and lab.port_open(445)


def test_client2_is_t2a4d_without_classic_delegation(samba_rbcd_lab: SambaLab) -> None:
    out = samba_rbcd_lab.samba_tool(
        "computer", "show", "CLIENT2", "--attributes=userAccountControl,msDS-AllowedToDelegateTo"
    ).stdout
    uac = int(re.search(r"userAccountControl: (\d+)", out).group(1))  # type: ignore[union-attr]
    assert uac & 0x01000000, out  # TRUSTED_TO_AUTH_FOR_DELEGATION
    assert "msDS-AllowedToDelegateTo" not in out, out
    assert not _client2_may_act_for_users_to_dc2(samba_rbcd_lab)


def test_rbcd_grant_and_revoke(
    samba_rbcd_lab: SambaLab, client2_cc: str, tmp_path: Path, rbcd_grant: None
) -> None:
    lab = samba_rbcd_lab
    realm = lab.realm

    # 1. No RBCD grant: S4U2Self works, S4U2Proxy is refused by the KDC.
    ok, out, log = _s4u(lab, client2_cc, tmp_path / "cc.before")
    assert not ok, out
    assert "KDC can't fulfill requested option" in out or "constrained delegation" in out, out
    refused = [ln for ln in _proxy_lines(log, "alice2", realm) if "reason=" in ln]
    assert refused, log
    assert "Constrained delegation not allowed" in refused[-1], refused

    # 2. Grant RBCD on DC2$ to CLIENT2$ (msDS-AllowedToActOnBehalfOfOtherIdentity).
    lab.samba_tool("delegation", "add-principal", "DC2$", "CLIENT2$")
    assert _client2_may_act_for_users_to_dc2(lab)
    ok, out, log = _s4u(lab, client2_cc, tmp_path / "cc.granted")
    assert ok, out + log
    granted = _proxy_lines(log, "alice2", realm)
    assert granted and all("reason=" not in ln for ln in granted), log
    # S4U2Proxy: a ticket for alice2 to cifs/dc2, issued to CLIENT2$ impersonating alice2.
    assert any(
        "TGS-REQ SUCCESS" in ln
        and f"alice2@{realm} cifs/{lab.fqdn}@{realm}" in ln
        and f"impersonatee=alice2@{realm}" in ln
        and "cname-in-addl-tkt" in ln
        for ln in granted
    ), granted
    klist = lab.run(["klist", "-c", f"FILE:{tmp_path / 'cc.granted'}"]).stdout
    assert f"Default principal: alice2@{realm}" in klist, klist
    assert f"cifs/{lab.fqdn}@{realm}" in klist, klist

    # 3. Revoke: refused again, with the same reason as before the grant.
    lab.samba_tool("delegation", "del-principal", "DC2$", "CLIENT2$")
    assert not _client2_may_act_for_users_to_dc2(lab)
    ok, out, log = _s4u(lab, client2_cc, tmp_path / "cc.after")
    assert not ok, out
    refused = [ln for ln in _proxy_lines(log, "alice2", realm) if "reason=" in ln]
    assert refused and "Constrained delegation not allowed" in refused[-1], log
