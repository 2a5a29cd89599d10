"""Golden files: every rendering of the two sample inputs, byte for byte.

Regenerate after an intended change with GSSPROXY_CONF_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os

import pytest

from gssproxy_conf import schema
from gssproxy_conf.ad import directory, ldif, powershell, samba_tool
from gssproxy_conf.ad.changes import change_set
from gssproxy_conf.install import plan
from gssproxy_conf.lint.gssproxy_ini import parse

from .conftest import DATA, GOLDEN

UPDATE = os.environ.get("GSSPROXY_CONF_UPDATE_GOLDEN") == "1"
VARIANTS = ["example", "rbcd"]


def renderings(variant: str) -> dict[str, str]:
    c = schema.load_file(str(DATA / f"{variant}.yaml"))
    out = {str(f.path).lstrip("/").replace("/", "__"): f.content for f in plan.build(c).files}
    cs = change_set([c])
    state = directory.parse((DATA / f"{variant}.current.ldif").read_text())
    out["ad.ldif"] = ldif.render(cs, state, c.base_dn)
    out["ad.samba-tool.sh"] = samba_tool.render(cs)
    out["ad.ps1"] = powershell.render(cs)
    return out


def cases() -> list[tuple[str, str]]:
    return [(v, name) for v in VARIANTS for name in sorted(renderings(v))]


@pytest.mark.parametrize(("variant", "name"), cases())
def test_golden(variant: str, name: str) -> None:
    got = renderings(variant)[name]
    path = GOLDEN / variant / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
    assert path.exists(), f"no golden file {path}; run with GSSPROXY_CONF_UPDATE_GOLDEN=1"
    assert got == path.read_text()


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_stale_golden_files(variant: str) -> None:
    on_disk = {p.name for p in (GOLDEN / variant).iterdir()}
    assert on_disk == set(renderings(variant))


def test_expected_file_set(example) -> None:
    paths = {str(f.path) for f in plan.build(example).files}
    assert paths == {
        "/etc/gssproxy/50-cifs-upcall-smb.conf",
        "/etc/gssproxy/50-cifs-upcall-nfs.conf",
        "/etc/gssproxy/51-cifs-upcall-protected.conf",
        "/etc/krb5.conf.d/cifs-upcall.conf",
        "/etc/request-key.d/cifs-upcall.conf",
        "/etc/cifs-upcall/policy.yaml",
        "/etc/auto.smb",
        "/etc/auto.master.d/cifs-upcall.autofs",
        "/etc/tmpfiles.d/cifs-upcall-gssproxy.conf",
        "/etc/systemd/system/gssproxy.service.d/cifs-upcall.conf",
    }


def test_key_facts_in_renderings(example) -> None:
    p = plan.build(example)
    smb = p.get("/etc/gssproxy/50-cifs-upcall-smb.conf")
    nfs = p.get("/etc/gssproxy/50-cifs-upcall-nfs.conf")
    rk = p.get("/etc/request-key.d/cifs-upcall.conf")
    am = p.get("/etc/auto.smb")
    assert smb and nfs and rk and am
    [smb_s] = parse(smb.content).sections
    [nfs_s] = parse(nfs.content).sections
    assert smb_s.values("impersonate") == ["yes"] and smb_s.values("allow_any_uid") == []
    assert smb_s.values("program") == [] and smb_s.values("mechs") == ["krb5"]
    assert smb_s.values("socket") == ["/run/gssproxy/cifs/cifs.sock"]
    assert nfs_s.values("socket") == []  # NFS stays on rpc.gssd's default socket
    assert nfs_s.values("impersonate") == ["no"]
    assert (
        "create cifs.spnego ver=0x2;* * /usr/sbin/cifs-upcall --policy "
        "/etc/cifs-upcall/policy.yaml %k\n" in rk.content
    )
    assert ",multiuser," in am.content and "cruid=${UID}" in am.content


def test_rbcd_has_descriptor_not_delegate_to(rbcd_example) -> None:
    state = directory.parse((DATA / "rbcd.current.ldif").read_text())
    text = ldif.render(change_set([rbcd_example]), state, rbcd_example.base_dn)
    assert "msDS-AllowedToDelegateTo" not in text
    assert text.count("replace: msDS-AllowedToActOnBehalfOfOtherIdentity") == 3  # 3 servers
    assert "CN=FILESRV7,OU=Servers,DC=example,DC=com" in text
    # 69632 (adcli: WORKSTATION_TRUST_ACCOUNT | DONT_EXPIRE_PASSWD) | 0x01000000
    assert "userAccountControl: 16846848" in text
    # svc-db already has NOT_DELEGATED (1114624 = 0x110200): no record for it
    assert "CN=svc-db," not in text
