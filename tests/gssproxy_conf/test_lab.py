"""Against the Samba 4.17 AD DC lab (realm LAB.TEST): the generated directory changes make a
refused S4U2Proxy succeed, and a real gssproxy on the generated files serves a real request
per service."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from gssproxy_conf import schema
from gssproxy_conf.ad import ldif
from gssproxy_conf.ad.changes import change_set
from gssproxy_conf.install import plan
from gssproxy_conf.install.apply import apply
from gssproxy_conf.model import Config, ProtectedUser

from . import ad_lab
from .gp_harness import DEFAULT_SOCKET, running_gssproxy

pytestmark = pytest.mark.lab

PROT_UID = 23111


@dataclass(frozen=True)
class Acct:
    name: str  # sAMAccountName
    keytab: Path


UF_DONT_EXPIRE_PASSWD = 0x10000
UF_T2A4D = 0x01000000
UF_NOT_DELEGATED = 0x00100000


def _config(  # type: ignore[no-untyped-def]
    lab, client: Acct, protected: str | None, extra: str = ""
) -> Config:
    text = (
        f"realm: {lab.realm}\n"
        f"client: {{principal: '{client.name}', keytab: {client.keytab}}}\n"
        f"smb: {{servers: [{lab.fqdn}]}}\n"
        "nfs: {enable: true, impersonate: false}\n"
    )
    if protected:
        text += (
            "protected_users:\n"
            f"  - {{name: {protected}, uid: {PROT_UID}, "
            f"keytab: /var/lib/gssproxy/clients/{PROT_UID}.keytab}}\n"
        )
    return schema.load(text + extra, "lab.yaml")


def _s4u(lab, client: Acct, user: str, tmp: Path) -> tuple[bool, str, str]:  # type: ignore[no-untyped-def]
    ok, out = ad_lab.s4u(lab, client.name, client.keytab, user, tmp)
    return ok, out, out


def _adcli_like(lab, name: str) -> Acct:  # type: ignore[no-untyped-def]
    """A computer as adcli joins it: DONT_EXPIRE_PASSWD set, and (another admin's work) a
    delegation to some other service already in msDS-AllowedToDelegateTo."""
    acct = Acct(f"{name.upper()}$", lab.add_computer(name))
    lab.samba_tool("user", "setexpiry", acct.name, "--noexpiry")
    lab.samba_tool("delegation", "add-service", acct.name, f"host/{lab.fqdn}")
    assert ad_lab.uac(lab, acct.name) & UF_DONT_EXPIRE_PASSWD
    return acct


@pytest.fixture(scope="module")
def pt_client(samba_lab) -> Acct:  # type: ignore[no-untyped-def]
    return _adcli_like(samba_lab, "gpcpt")


@pytest.fixture(scope="module")
def protected_user(samba_lab) -> Iterator[str]:  # type: ignore[no-untyped-def]
    samba_lab.add_user("gpcprot", PROT_UID, local=False)  # setexpiry: DONT_EXPIRE_PASSWD
    yield "gpcprot"


def _kept(lab, client: Acct, protected: str | None, uac_before: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    """The bits and values that were there before the change set are still there."""
    for account, before in uac_before.items():
        assert ad_lab.uac(lab, account) & before == before, (account, before)
    assert f"host/{lab.fqdn}" in ad_lab.attr(lab, client.name, "msDS-AllowedToDelegateTo")


def test_protocol_transition_ldif_twice_makes_s4u2proxy_succeed(  # type: ignore[no-untyped-def]
    samba_lab, pt_client: Acct, protected_user: str, tmp_path: Path
) -> None:
    lab = samba_lab
    ok, out, log = _s4u(lab, pt_client, "alice", tmp_path)
    assert not ok, out  # no delegation yet: the KDC refuses
    assert "reason=" in log and "alice" in log, log

    c = _config(lab, pt_client, protected_user)
    cs = change_set([c])
    before = {a: ad_lab.uac(lab, a) for a in (pt_client.name, protected_user)}
    text = ad_lab.render_ldif(lab, cs, c.base_dn)
    assert "replace: userAccountControl" in text and "add: msDS-AllowedToDelegateTo" in text
    for attempt in (1, 2):  # the same file twice: the second run changes nothing, exits 0
        r = ad_lab.apply_ldif(lab, text, "pt.ldif")
        assert r.rc == 0, (attempt, r.out)
    _kept(lab, pt_client, protected_user, before)
    assert ad_lab.uac(lab, pt_client.name) & UF_T2A4D
    assert ad_lab.uac(lab, protected_user) & UF_NOT_DELEGATED
    spns = ad_lab.attr(lab, pt_client.name, "msDS-AllowedToDelegateTo")
    assert sorted(spns) == sorted([f"host/{lab.fqdn}", f"cifs/{lab.fqdn}"])
    # rendered again from a new export: nothing left to do
    again = ad_lab.render_ldif(lab, cs, c.base_dn)
    assert ldif.parse(again) == [] and "Nothing to change" in again

    ok, out, log = _s4u(lab, pt_client, "alice", tmp_path)
    assert ok, out + log
    proxied = [
        ln
        for ln in log.splitlines()
        if "TGS-REQ" in ln and "impersonatee=alice@" in ln and f"cifs/{lab.fqdn}" in ln
    ]
    assert proxied and all("reason=" not in ln for ln in proxied), log
    # the protected user: the KDC itself refuses to delegate it
    ok, out, _ = _s4u(lab, pt_client, protected_user, tmp_path)
    assert not ok, out


def test_samba_tool_script_twice_keeps_other_bits_and_grants(  # type: ignore[no-untyped-def]
    samba_lab, tmp_path: Path
) -> None:
    lab = samba_lab
    client = _adcli_like(lab, "gpcst")
    prot = "gpcprot3"
    lab.add_user(prot, PROT_UID + 2, local=False)
    c = _config(lab, client, None)
    c = dataclasses.replace(
        c, protected_users=(ProtectedUser(prot, PROT_UID + 2, PurePosixPath("/k")),)
    )
    cs = change_set([c])
    before = {a: ad_lab.uac(lab, a) for a in (client.name, prot)}
    first = ad_lab.run_samba_tool_script(lab, cs, "st.sh")
    assert first.rc == 0 and "done: samba-tool delegation for-any-protocol" in first.out, first.out
    second = ad_lab.run_samba_tool_script(lab, cs, "st.sh")
    assert second.rc == 0, second.out
    assert "done:" not in second.out and second.out.count("unchanged:") == 3, second.out
    _kept(lab, client, None, before)
    assert ad_lab.uac(lab, client.name) & UF_T2A4D and ad_lab.uac(lab, prot) & UF_NOT_DELEGATED
    ok, out, log = _s4u(lab, client, "alice", tmp_path)
    assert ok, out + log


def test_samba_tool_script_still_stops_on_real_errors(  # type: ignore[no-untyped-def]
    samba_lab, tmp_path: Path
) -> None:
    lab = samba_lab
    c = _config(lab, Acct("NOSUCH$", Path("/nonexistent")), None)
    r = ad_lab.run_samba_tool_script(lab, change_set([c]), "bad.sh")
    assert r.rc != 0 and "unchanged" not in r.out and "done:" not in r.out, r.out


def test_rbcd_ldif_and_script_twice_keep_another_clients_grant(  # type: ignore[no-untyped-def]
    samba_lab, tmp_path: Path
) -> None:
    """4.17's KDC ignores RBCD; the directory side is still checked here: the server's
    descriptor keeps the grant another client already had, through both renderings."""
    lab = samba_lab
    other = Acct("GPCOTHER$", lab.add_computer("gpcother"))
    lab.add_computer("gpcfs")
    lab.samba_tool("delegation", "add-principal", "GPCFS$", other.name)
    other_sid = ad_lab.sid(lab, other.name)
    for name, render in (("gpcrl", "ldif"), ("gpcrs", "samba-tool")):
        client = _adcli_like(lab, name)
        c = schema.load(
            f"realm: {lab.realm}\n"
            f"client: {{principal: '{client.name}', keytab: {client.keytab}}}\n"
            "delegation: rbcd\n"
            f"smb: {{servers: [gpcfs.{lab.realm.lower()}]}}\n",
            "rbcd.yaml",
        )
        cs = change_set([c])
        before = {client.name: ad_lab.uac(lab, client.name)}
        for attempt in (1, 2):
            if render == "ldif":
                r = ad_lab.apply_ldif(lab, ad_lab.render_ldif(lab, cs, c.base_dn), "rbcd.ldif")
            else:
                r = ad_lab.run_samba_tool_script(lab, cs, "rbcd.sh")
            assert r.rc == 0, (render, attempt, r.out)
        _kept(lab, client, None, before)
        sids = ad_lab.rbcd_sids(lab, "GPCFS$")
        assert other_sid in sids and ad_lab.sid(lab, client.name) in sids, (render, sids)
        assert ldif.parse(ad_lab.render_ldif(lab, cs, c.base_dn)) == []
    assert len(ad_lab.rbcd_sids(lab, "GPCFS$")) == 3


def test_generated_gssproxy_serves_each_service(  # type: ignore[no-untyped-def]
    samba_lab, tmp_path: Path
) -> None:
    lab = samba_lab
    client = Acct("GPCGP$", lab.add_computer("gpcgp"))
    prot = "gpcprot2"
    lab.add_user(prot, PROT_UID + 1, local=False)
    c = _config(
        lab,
        client,
        None,
        "protected_users:\n"
        f"  - {{name: {prot}, uid: {PROT_UID + 1}, "
        f"keytab: /var/lib/gssproxy/clients/{PROT_UID + 1}.keytab}}\n",
    )
    # the directory side through the samba-tool rendering this time
    r = ad_lab.run_samba_tool_script(lab, change_set([c]), "gp.sh")
    assert r.rc == 0, r.out
    root, work = tmp_path / "root", tmp_path / "work"
    apply(plan.build(c), root)
    (work / "clients").mkdir(parents=True)
    lab.export_keytab(f"{prot}@{lab.realm}", work / "clients" / f"{PROT_UID + 1}.keytab")

    with running_gssproxy(root, work, netns=lab.ns, env={"KRB5_CONFIG": str(lab.krb5_conf)}) as gp:
        target = f"cifs@{lab.fqdn}"
        # SMB: root names alice; gssproxy does S4U2Self + S4U2Proxy with GPCGP$'s keytab
        off = lab.kdc_log_offset()
        r = gp.request("/run/gssproxy/cifs/cifs.sock", f"alice@{lab.realm}", target)
        assert r.ok and r.initiator == f"alice@{lab.realm}", r.raw
        log = lab.kdc_log_since(off)
        assert any("impersonatee=alice@" in ln and "GPCGP$" in ln for ln in log.splitlines()), log
        # NFS: root without a name on the default socket gets the machine credential
        r = gp.request(DEFAULT_SOCKET, None, target)
        assert r.ok and r.initiator == f"GPCGP$@{lab.realm}", r.raw
        # protected user: its own keytab on its own socket, no impersonation
        off = lab.kdc_log_offset()
        r = gp.request(f"/run/gssproxy/cifs/protected-{prot}.sock", f"{prot}@{lab.realm}", target)
        assert r.ok and r.initiator == f"{prot}@{lab.realm}", r.raw
        assert f"impersonatee={prot}@" not in lab.kdc_log_since(off)
        # and the impersonating service cannot be used for it: NOT_DELEGATED (user sensitive)
        r = gp.request("/run/gssproxy/cifs/cifs.sock", f"{prot}@{lab.realm}", target)
        assert not r.ok, r.raw
        log = gp.log_text()
        for svc in ("cifs-upcall-smb", "cifs-upcall-nfs-client", f"cifs-upcall-protected-{prot}"):
            assert f"Connection matched service {svc}" in log
