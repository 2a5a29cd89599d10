"""Against the Samba 4.22 DC (trixie chroot, realm RBCD.TEST): the RBCD LDIF, with the
binary security descriptor built by gssproxy-conf, turns a refused S4U2Proxy into success."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gssproxy_conf import schema
from gssproxy_conf.ad import ldif

pytestmark = pytest.mark.rbcd


@pytest.fixture(autouse=True)
def _only_if_chroot_is_cached() -> None:
    # building the chroot downloads from a Debian mirror; these tests never trigger that
    from tests.lab.chroot import cached_chroot

    if cached_chroot() is None:
        pytest.skip("the Samba 4.22 chroot is not cached (see tests/lab/chroot.py)")


def _tool(lab, *argv: str) -> str:  # type: ignore[no-untyped-def]
    # the chroot's 4.22 ldb tools on the DC's own sam.ldb (the host's 4.17 ldb is older)
    res = subprocess.run(lab._tool_argv(list(argv)), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def _attr(lab, account: str, attr: str) -> str:  # type: ignore[no-untyped-def]
    out = _tool(
        lab,
        "ldbsearch",
        "-H",
        lab._inner(lab.dc_dir / "private/sam.ldb"),
        f"(sAMAccountName={account})",
        attr,
    )
    m = re.search(rf"^{attr}: (.+)$", out, re.MULTILINE)
    assert m, out
    return m.group(1)


@pytest.fixture
def no_grant(samba_rbcd_lab) -> Iterator[None]:  # type: ignore[no-untyped-def]
    yield
    samba_rbcd_lab.samba_tool("delegation", "del-principal", "DC2$", "CLIENT2$", check=False)


def _s4u(lab, tmp: Path) -> tuple[bool, str, str]:  # type: ignore[no-untyped-def]
    cc = f"FILE:{tmp}/cc.client2"
    lab.run(
        ["kinit", "-k", "-t", str(lab.base / "client2.keytab"), f"CLIENT2$@{lab.realm}"],
        env=lab.env(KRB5CCNAME=cc),
    )
    off = lab.kdc_log_offset()
    res = lab.run(
        ["kvno", "-U", "alice2", "-P", f"cifs/{lab.fqdn}", "--out-cache", f"FILE:{tmp}/cc.out"],
        env=lab.env(KRB5CCNAME=cc),
        check=False,
    )
    return res.returncode == 0, res.stdout + res.stderr, lab.kdc_log_since(off)


def test_rbcd_ldif_makes_s4u2proxy_succeed(  # type: ignore[no-untyped-def]
    samba_rbcd_lab, no_grant: None, tmp_path: Path
) -> None:
    lab = samba_rbcd_lab
    ok, out, log = _s4u(lab, tmp_path)
    assert not ok, out
    assert "Constrained delegation not allowed" in log, log

    client_sid = _attr(lab, "CLIENT2$", "objectSid")
    out = _tool(
        lab,
        "ldbsearch",
        "-H",
        lab._inner(lab.dc_dir / "private/sam.ldb"),
        "(sAMAccountName=DC2$)",
        "userAccountControl",
    )
    dc_dn = re.search(r"^dn: (.+)$", out, re.MULTILINE).group(1)  # type: ignore[union-attr]
    uac = _attr(lab, "CLIENT2$", "userAccountControl")
    c = schema.load(
        f"realm: {lab.realm}\n"
        f"client: {{principal: CLIENT2$, keytab: {lab.base / 'client2.keytab'}, "
        f"sid: {client_sid}}}\n"
        "delegation: rbcd\n"
        f"smb: {{servers: [{lab.fqdn}]}}\n"
        f"ad: {{account_uac: {{CLIENT2$: {uac}}}, dns: {{DC2$: '{dc_dn}'}}}}\n",
        "rbcd-lab.yaml",
    )
    text = ldif.render(c)
    assert f"dn: {dc_dn}" in text
    path = lab.base / "gpc-rbcd.ldif"
    path.write_text(text)
    _tool(lab, "ldbmodify", "-H", lab._inner(lab.dc_dir / "private/sam.ldb"), lab._inner(path))

    # Samba reads back our descriptor as the grant we meant
    shown = lab.samba_tool("delegation", "show", "DC2$").stdout
    assert "cn=client2," in shown.lower(), shown

    ok, out, log = _s4u(lab, tmp_path)
    assert ok, out + log
    assert any(
        "TGS-REQ SUCCESS" in ln and "impersonatee=alice2@" in ln for ln in log.splitlines()
    ), log
