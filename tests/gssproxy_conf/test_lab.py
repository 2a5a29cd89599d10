"""Against the Samba 4.17 AD DC lab (realm LAB.TEST): the generated directory changes make a
refused S4U2Proxy succeed, and a real gssproxy on the generated files serves a real request
per service."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gssproxy_conf import plan, schema
from gssproxy_conf.ad import ldif, samba_tool
from gssproxy_conf.apply import apply
from gssproxy_conf.model import Config

from .gp_harness import DEFAULT_SOCKET, running_gssproxy

pytestmark = pytest.mark.lab

PROT_UID = 23111


@dataclass(frozen=True)
class Acct:
    name: str  # sAMAccountName
    keytab: Path


def _uac(lab, account: str) -> int:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [
            "ldbsearch",
            "-H",
            str(lab.dc_dir / "private/sam.ldb"),
            f"(sAMAccountName={account})",
            "userAccountControl",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(re.search(r"userAccountControl: (\d+)", out).group(1))  # type: ignore[union-attr]


def _config(  # type: ignore[no-untyped-def]
    lab, client: Acct, protected: str | None, extra: str = ""
) -> Config:
    text = (
        f"realm: {lab.realm}\n"
        f"client: {{principal: '{client.name}', keytab: {client.keytab}}}\n"
        f"smb: {{servers: [{lab.fqdn}]}}\n"
        "nfs: {impersonate: false}\n"
    )
    uacs = {client.name: _uac(lab, client.name)}
    if protected:
        text += (
            "protected_users:\n"
            f"  - {{name: {protected}, uid: {PROT_UID}, "
            f"keytab: /var/lib/gssproxy/clients/{PROT_UID}.keytab}}\n"
        )
        uacs[protected] = _uac(lab, protected)
    text += "ad: {account_uac: {" + ", ".join(f"'{k}': {v}" for k, v in uacs.items()) + "}}\n"
    return schema.load(text + extra, "lab.yaml")


def _s4u(lab, client: Acct, user: str, tmp: Path) -> tuple[bool, str, str]:  # type: ignore[no-untyped-def]
    """kinit from the keytab, then kvno -U user -P cifs/dc: S4U2Self + S4U2Proxy."""
    cc = f"FILE:{tmp}/cc.{client.name}"
    lab.run(
        ["kinit", "-k", "-t", str(client.keytab), f"{client.name}@{lab.realm}"],
        env=lab.env(KRB5CCNAME=cc),
    )
    off = lab.kdc_log_offset()
    res = lab.run(
        ["kvno", "-U", user, "-P", f"cifs/{lab.fqdn}", "--out-cache", f"FILE:{tmp}/cc.{user}.out"],
        env=lab.env(KRB5CCNAME=cc),
        check=False,
    )
    return res.returncode == 0, res.stdout + res.stderr, lab.kdc_log_since(off)


@pytest.fixture(scope="module")
def pt_client(samba_lab) -> Acct:  # type: ignore[no-untyped-def]
    return Acct("GPCPT$", samba_lab.add_computer("gpcpt"))


@pytest.fixture(scope="module")
def protected_user(samba_lab) -> Iterator[str]:  # type: ignore[no-untyped-def]
    samba_lab.add_user("gpcprot", PROT_UID, local=False)
    yield "gpcprot"


def test_protocol_transition_ldif_makes_s4u2proxy_succeed(  # type: ignore[no-untyped-def]
    samba_lab, pt_client: Acct, protected_user: str, tmp_path: Path
) -> None:
    lab = samba_lab
    ok, out, log = _s4u(lab, pt_client, "alice", tmp_path)
    assert not ok, out  # no delegation yet: the KDC refuses
    assert "reason=" in log and "alice" in log, log

    # the protocol-transition LDIF, without protected users first
    first = tmp_path / "pt.ldif"
    first.write_text(ldif.render(_config(lab, pt_client, None)))
    subprocess.run(
        ["ldbmodify", "-H", str(lab.dc_dir / "private/sam.ldb"), str(first)],
        check=True,
        capture_output=True,
    )
    assert _uac(lab, pt_client.name) & 0x01000000
    ok, out, log = _s4u(lab, pt_client, "alice", tmp_path)
    assert ok, out + log
    proxied = [
        ln
        for ln in log.splitlines()
        if "TGS-REQ" in ln and "impersonatee=alice@" in ln and f"cifs/{lab.fqdn}" in ln
    ]
    assert proxied and all("reason=" not in ln for ln in proxied), log
    ok, out, _ = _s4u(lab, pt_client, protected_user, tmp_path)
    assert ok, out  # not yet protected: delegation works for it too

    # now with the protected user: the KDC itself refuses to delegate it
    second = tmp_path / "pt-protected.ldif"
    second.write_text(ldif.render(_config(lab, pt_client, protected_user)))
    subprocess.run(
        ["ldbmodify", "-H", str(lab.dc_dir / "private/sam.ldb"), str(second)],
        check=True,
        capture_output=True,
    )
    assert _uac(lab, protected_user) & 0x00100000
    ok, out, log = _s4u(lab, pt_client, protected_user, tmp_path)
    assert not ok, out
    ok, out, _ = _s4u(lab, pt_client, "alice", tmp_path)
    assert ok, out


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
    for cmd in samba_tool.commands(c):
        assert cmd[0] == "samba-tool"
        lab.samba_tool(*cmd[1:])
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
        for svc in ("cifs-upcall-smb", "nfs-client", f"cifs-upcall-protected-{prot}"):
            assert f"Connection matched service {svc}" in log
