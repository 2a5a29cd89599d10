"""Against the Samba 4.22 DC (trixie chroot, realm RBCD.TEST): the RBCD LDIF, with the
binary security descriptor built by gssproxy-conf, turns a refused S4U2Proxy into success;
applied twice it changes nothing. A fleet change set grants through a group: members can be
impersonated for, a non-member cannot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gssproxy_conf import schema
from gssproxy_conf.ad import ldif
from gssproxy_conf.ad.changes import change_set
from gssproxy_conf.model import Config

from . import ad_lab

pytestmark = pytest.mark.rbcd


@pytest.fixture(autouse=True)
def _only_if_chroot_is_cached() -> None:
    # building the chroot downloads from a Debian mirror; these tests never trigger that
    from tests.components.chroot import cached_chroot

    if cached_chroot() is None:
        pytest.skip("the Samba 4.22 chroot is not cached (see tests/components/chroot.py)")


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


def _rbcd_config(lab, account: str, keytab: Path, extra: str = "") -> Config:  # type: ignore[no-untyped-def]
    return schema.load(
        f"realm: {lab.realm}\n"
        f"client: {{principal: '{account}', keytab: {keytab}}}\n"
        "delegation: rbcd\n"
        f"smb: {{servers: [{lab.fqdn}]}}\n" + extra,
        f"{account}.yaml",
    )


def test_rbcd_ldif_twice_makes_s4u2proxy_succeed(  # type: ignore[no-untyped-def]
    samba_rbcd_lab, no_grant: None, tmp_path: Path
) -> None:
    lab = samba_rbcd_lab
    ok, out, log = _s4u(lab, tmp_path)
    assert not ok, out
    assert "Constrained delegation not allowed" in log, log

    c = _rbcd_config(lab, "CLIENT2$", lab.base / "client2.keytab")
    cs = change_set([c])
    uac_before = ad_lab.uac(lab, "CLIENT2$")
    text = ad_lab.render_ldif(lab, cs, c.base_dn)
    # the DN comes from the export (DC2 lives in OU=Domain Controllers), not from a guess
    assert "dn: CN=DC2,OU=Domain Controllers," in text, text
    for attempt in (1, 2):
        r = ad_lab.apply_ldif(lab, text, "gpc-rbcd.ldif")
        assert r.rc == 0, (attempt, r.out)
    assert ad_lab.uac(lab, "CLIENT2$") == uac_before  # T2A4D was set already: untouched
    assert ldif.parse(ad_lab.render_ldif(lab, cs, c.base_dn)) == []

    # Samba reads back our descriptor as the grant we meant
    shown = lab.samba_tool("delegation", "show", "DC2$").stdout
    assert "cn=client2," in shown.lower(), shown

    ok, out, log = _s4u(lab, tmp_path)
    assert ok, out + log
    assert any(
        "TGS-REQ SUCCESS" in ln and "impersonatee=alice2@" in ln for ln in log.splitlines()
    ), log


GROUP = "gpc-fleet"


@pytest.fixture
def fleet(samba_rbcd_lab) -> Iterator[dict[str, Path]]:  # type: ignore[no-untyped-def]
    """CLIENT3$ and CLIENT4$ (new); CLIENT4$ gets TRUSTED_TO_AUTH_FOR_DELEGATION too, so the only
    thing it lacks is the group membership. Undone afterwards."""
    lab = samba_rbcd_lab
    keytabs = {"CLIENT2$": lab.base / "client2.keytab"}
    for name in ("client3", "client4"):
        if f"{name}.keytab" not in {p.name for p in lab.base.iterdir()}:
            lab.add_computer(name)
        keytabs[f"{name.upper()}$"] = lab.base / f"{name}.keytab"
    lab.samba_tool("delegation", "for-any-protocol", "CLIENT4$", "on", check=False)
    # what must survive: another grant on DC2$ (a user: no effect on the clients), and
    # CLIENT3$'s DONT_EXPIRE_PASSWD
    lab.samba_tool("delegation", "add-principal", "DC2$", "bob2")
    lab.samba_tool("user", "setexpiry", "CLIENT3$", "--noexpiry")
    yield keytabs
    lab.samba_tool("delegation", "del-principal", "DC2$", "bob2", check=False)
    lab.samba_tool("delegation", "del-principal", "DC2$", GROUP, check=False)
    lab.samba_tool("group", "delete", GROUP, check=False)


@pytest.mark.parametrize("rendering", ["samba-tool", "ldif"])
def test_fleet_change_set_grants_through_a_group(  # type: ignore[no-untyped-def]
    samba_rbcd_lab, fleet: dict[str, Path], rendering: str, tmp_path: Path
) -> None:
    """Two client files -> one change set: DC2$'s descriptor names the group once, both
    clients are members and can be impersonated for; CLIENT4$ (same flags, not a member)
    cannot."""
    lab = samba_rbcd_lab
    extra = f"ad: {{rbcd_group: {GROUP}}}\n"
    configs = [_rbcd_config(lab, a, fleet[a], extra) for a in ("CLIENT2$", "CLIENT3$")]
    cs = change_set(configs)
    exports = []
    for attempt in (1, 2):
        if rendering == "samba-tool":
            r = ad_lab.run_samba_tool_script(lab, cs, "fleet.sh")
        else:
            if attempt == 1:  # LDIF names the group by SID: it must exist first
                lab.samba_tool("group", "add", GROUP)
            r = ad_lab.apply_ldif(lab, ad_lab.render_ldif(lab, cs, configs[0].base_dn), "f.ldif")
        assert r.rc == 0, (attempt, r.out)
        exports.append(ad_lab.export(lab, cs.accounts()))
    # the second run changed nothing (4.22's addmembers accepts a repeat silently, 4.17's
    # refuses it; both are fine)
    assert exports[0] == exports[1]
    assert ldif.parse(ad_lab.render_ldif(lab, cs, configs[0].base_dn)) == []
    # the descriptor names the group, not the clients; the grant that was there stays
    assert ad_lab.rbcd_sids(lab, "DC2$") == [ad_lab.sid(lab, "bob2"), ad_lab.sid(lab, GROUP)]
    assert ad_lab.uac(lab, "CLIENT3$") & 0x10000  # DONT_EXPIRE_PASSWD kept
    members = lab.samba_tool("group", "listmembers", GROUP).stdout.lower().split()
    assert sorted(members) == ["client2$", "client3$"], members

    for account, allowed in (("CLIENT2$", True), ("CLIENT3$", True), ("CLIENT4$", False)):
        ok, out = ad_lab.s4u(lab, account, fleet[account], "alice2", tmp_path)
        assert ok is allowed, (account, out)
        if not allowed:
            assert "Constrained delegation not allowed" in out, out
