"""Apply the generated AD renderings to a lab DC the way an administrator would: export the
current values with ldbsearch, apply LDIF with ldbmodify, run the samba-tool script with sh.
Works for both labs (the 4.22 one runs its own tools inside its chroot)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gssproxy_conf.ad import directory, ldif, samba_tool
from gssproxy_conf.ad.changes import ChangeSet
from tests.components.samba import SambaLab


@dataclass(frozen=True)
class Run:
    rc: int
    out: str  # stdout + stderr
    stdout: str


def _run(lab: SambaLab, argv: list[str]) -> Run:
    res = subprocess.run(lab._tool_argv(argv), capture_output=True, text=True, timeout=180)
    return Run(res.returncode, res.stdout + res.stderr, res.stdout)


def sam(lab: SambaLab) -> str:
    return lab._inner(lab.dc_dir / "private/sam.ldb")


def export(lab: SambaLab, accounts: list[str]) -> str:
    flt = directory.search_filter(accounts)
    r = _run(lab, ["ldbsearch", "-H", sam(lab), flt, *directory.EXPORT_ATTRS])
    assert r.rc == 0, r.out
    return r.stdout


def state(lab: SambaLab, cs: ChangeSet) -> directory.Directory:
    return directory.parse(export(lab, cs.accounts()))


def render_ldif(lab: SambaLab, cs: ChangeSet, base_dn: str) -> str:
    return ldif.render(cs, state(lab, cs), base_dn)


def apply_ldif(lab: SambaLab, text: str, name: str) -> Run:
    path = lab.base / name
    path.write_text(text)
    return _run(
        lab, ["ldbmodify", "--controls=permissive_modify:0", "-H", sam(lab), lab._inner(path)]
    )


def run_samba_tool_script(lab: SambaLab, cs: ChangeSet, name: str) -> Run:
    path = lab.base / name
    path.write_text(samba_tool.render(cs, ("-s", lab._inner(lab.smb_conf))))
    return _run(lab, ["sh", lab._inner(path)])


def attr(lab: SambaLab, account: str, name: str) -> list[str]:
    r = _run(lab, ["ldbsearch", "-H", sam(lab), f"(sAMAccountName={account})", name])
    assert r.rc == 0, r.out
    unfolded = re.sub(r"\n ", "", r.stdout)
    return re.findall(rf"^{name}: (.+)$", unfolded, re.MULTILINE)


def uac(lab: SambaLab, account: str) -> int:
    [v] = attr(lab, account, "userAccountControl")
    return int(v)


def rbcd_sids(lab: SambaLab, account: str) -> list[str]:
    from gssproxy_conf.ad import security_descriptor as sd

    vals = attr(lab, account, directory.RBCD_ATTR)
    return [a.sid for a in sd.from_sddl(vals[0]).dacl] if vals else []


def sid(lab: SambaLab, account: str) -> str:
    [v] = attr(lab, account, "objectSid")
    return v


def s4u(lab: SambaLab, account: str, keytab: Path, user: str, tmp: Path) -> tuple[bool, str]:
    """A fresh TGT (so its PAC carries current group memberships), then S4U2Self+S4U2Proxy."""
    cc = f"FILE:{tmp}/cc.{account}"
    lab.run(
        ["kinit", "-k", "-t", str(keytab), f"{account}@{lab.realm}"], env=lab.env(KRB5CCNAME=cc)
    )
    off = lab.kdc_log_offset()
    res = lab.run(
        [
            "kvno",
            "-U",
            user,
            "-P",
            f"cifs/{lab.fqdn}",
            "--out-cache",
            f"FILE:{tmp}/cc.{account}.out",
        ],
        env=lab.env(KRB5CCNAME=cc),
        check=False,
    )
    return res.returncode == 0, res.stdout + res.stderr + lab.kdc_log_since(off)
