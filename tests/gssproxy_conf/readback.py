"""Read the rendered files back into the model fields they encode (test tooling).

Each client-side fact must be recoverable from the files alone; ``project`` picks the same
facts from the model so the two can be compared."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import yaml

from gssproxy_conf.install.marker import Ownership, ownership, strip
from gssproxy_conf.install.plan import Plan
from gssproxy_conf.lint.gssproxy_ini import parse
from gssproxy_conf.model import Config, Mode, ProxyKind
from gssproxy_conf.render import gssproxy as rg


def project(c: Config) -> dict[str, Any]:
    return {
        "servers": list(c.smb.servers),
        "realm": c.realm,
        "mode": c.smb.policy.value,
        "min_uid": c.smb.min_uid,
        "deadline": c.smb.deadline,
        "smb": (
            {
                "socket": str(c.smb.socket),
                "keytab": str(c.client.keytab),
                "principal": c.client_principal,
            }
            if c.smb.impersonate
            else None
        ),
        "nfs": None
        if c.nfs is None
        else {
            "impersonate": c.nfs.impersonate,
            "socket": str(c.nfs.socket) if c.nfs.socket else None,
            "keytab": str(c.client.keytab),
        },
        "protected": [
            {
                "name": u.name,
                "uid": u.uid,
                "keytab": str(u.keytab),
                "principal": c.protected_principal(u),
                "socket": str(c.protected_socket(u)),
            }
            for u in c.protected_users
        ],
        "local": [{"name": u.name, "uid": u.uid, "principal": u.principal} for u in c.local_users],
        "helper": [
            str(c.helper.path),
            "--policy",
            str(c.helper.policy),
            *(["-k", str(c.helper.krb5_conf)] if c.helper.krb5_conf else []),
            *c.helper.args,
            "%k",
        ],
        "automount": None
        if c.automount is None
        else {
            "map": str(c.automount.map),
            "mountpoint": str(c.automount.mountpoint),
            "shares": [list(s) for s in c.automount.shares],
            "options": list(c.automount.options),
        },
    }


def _body(p: Plan, path: PurePosixPath | str) -> str | None:
    f = p.get(path)
    if f is None:
        return None
    assert ownership(f.content) is Ownership.OURS
    return strip(f.content)


def _store(values: list[str], key: str) -> str | None:
    return next((v.split(":", 1)[1] for v in values if v.startswith(key + ":")), None)


def readback(p: Plan, policy_path: PurePosixPath) -> dict[str, Any]:
    policy_text = _body(p, policy_path)
    assert policy_text is not None
    pol = yaml.safe_load(policy_text)
    out: dict[str, Any] = {}
    general = pol["rules"][-1]
    out["servers"] = general["match"]["servers"]
    out["realm"] = general["match"]["realm"]
    out["mode"] = pol["defaults"]["mode"]
    out["min_uid"] = pol["defaults"]["min_uid"]
    out["deadline"] = pol["defaults"]["deadline"]

    smb = _body(p, rg.SMB_FILE)
    if smb is None:
        out["smb"] = None
        assert general["mode"] == Mode.LOCAL_ONLY.value and "socket" not in general
    else:
        [s] = parse(smb).sections
        out["smb"] = {
            "socket": s.first("socket"),
            "keytab": _store(s.values("cred_store"), "keytab"),
            "principal": s.first("krb5_principal"),
        }
        assert general["socket"] == s.first("socket")
        assert general["proxy"] == ProxyKind.IMPERSONATE.value
        assert s.first("impersonate") == "yes"
    nfs = _body(p, rg.NFS_FILE)
    if nfs is None:
        out["nfs"] = None
    else:
        [s] = parse(nfs).sections
        out["nfs"] = {
            "impersonate": s.first("impersonate") == "yes",
            "socket": s.first("socket"),
            "keytab": _store(s.values("cred_store"), "keytab"),
        }
    prot = _body(p, rg.PROTECTED_FILE)
    sections = parse(prot).sections if prot else ()
    rules_by_socket = {r.get("socket"): r for r in pol["rules"]}
    out["protected"] = []
    for s in sections:
        assert s.service and s.service.startswith(rg.PROTECTED_PREFIX)
        assert s.first("impersonate") is None
        rule = rules_by_socket[s.first("socket")]
        out["protected"].append(
            {
                "name": s.service[len(rg.PROTECTED_PREFIX) :],
                "uid": int(rule["match"]["uids"][0]),
                "keytab": _store(s.values("cred_store"), "client_keytab"),
                "principal": s.first("krb5_principal"),
                "socket": s.first("socket"),
            }
        )
        assert rule["match"]["users"] == [out["protected"][-1]["name"]]
        # their own keytab, not impersonation; deny-listed so no impersonating rule reaches them
        assert rule["proxy"] == ProxyKind.OWN_KEYTAB.value
        assert out["protected"][-1]["name"] in pol["deny_users"]
    mapped = pol["rules"][-2]["match"] if pol["principal_map"] else {"users": [], "uids": []}
    out["local"] = [
        {"name": n, "uid": int(u), "principal": pol["principal_map"][n]}
        for n, u in zip(mapped["users"], mapped["uids"], strict=True)
    ]
    rk = _body(p, "/etc/request-key.d/cifs-upcall.conf")
    assert rk is not None
    [line] = [ln for ln in rk.splitlines() if ln and not ln.startswith("#")]
    words = line.split()
    assert words[:4] == ["create", "cifs.spnego", "ver=0x2;*", "*"]
    out["helper"] = words[4:]
    master = _body(p, "/etc/auto.master.d/cifs-upcall.autofs")
    if master is None:
        out["automount"] = None
    else:
        mountpoint, mapfile = master.split()
        shares, options = [], None
        for ln in (_body(p, mapfile) or "").splitlines():
            mm = re.match(r"^(\S+) -(\S+) :(\S+)$", ln)
            assert mm, ln
            opts = mm.group(2).split(",")
            assert opts[:3] == ["fstype=cifs", "multiuser", "cruid=${UID}"]
            options = opts[3:]
            shares.append([mm.group(1), mm.group(3)])
        out["automount"] = {
            "map": mapfile,
            "mountpoint": mountpoint,
            "shares": shares,
            "options": options,
        }
    return out
