"""The helper's own environment and its log line (issue #8, cases 8 and 11).

Case 8: DESIGN.md rule 6: the helper starts from a clean environment of its own; the local
source can never reach gssproxy, whatever request-key.d (or a compromised parent) put there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.components.samba import SambaLab
from tests.lab.hostile import _attacks as A
from tests.proxy_fixtures import Rig
from tests.upcall_driver import caller

pytestmark = pytest.mark.lab


def test_inherited_gss_use_proxy_never_impersonates(pt_rig: Rig, tmp_world: Path) -> None:
    """ATTACK: the helper runs with GSS_USE_PROXY=yes, GSSPROXY_SOCKET=<the impersonating
    socket>, KRB5CCNAME=<bob's cache>, KRB5_CONFIG=<a file of bob's> in its own environment,
    under a local-only policy with bob in deny_users. Secure: never source=proxy or
    impersonated, no gssproxy connection, and bob's FILE cache is byte-for-byte unchanged (no
    X-GSSPROXY entry written into it by the interposer)."""
    rig, lab = pt_rig, pt_rig.lab
    bob = lab.users["bob"]
    cc = tmp_world / "cc.bob-env"
    lab.kinit(bob, f"FILE:{cc}")
    before = cc.read_bytes()
    bob_conf = tmp_world / "bob-krb5.conf"
    bob_conf.write_text(lab.krb5_conf_text())
    A.chown(bob_conf, "bob")
    policy = rig.write_policy(
        "hostile-local-only.yaml",
        f"version: 1\ndefaults: {{mode: local-only, socket: {rig.socket}}}\ndeny_users: [bob]\n",
    )
    env = {**A.KERNEL_ENV, "GSS_USE_PROXY": "yes", "GSSPROXY_SOCKET": str(rig.socket),
           "KRB5CCNAME": f"FILE:{cc}", "KRB5_CONFIG": str(bob_conf),
           "GSS_MECH_CONFIG": "/nonexistent", "KRB5_TRACE": str(tmp_world / "trace")}  # fmt: skip
    off = rig.log_offset()
    # bob's process names no usable cache: only the helper's own environment names bob's
    with caller(lab, bob.name, lab.env(KRB5CCNAME=f"FILE:{tmp_world}/none-bob")) as pid:
        r = A.dry_run(lab, A.description(lab, bob.uid, pid), tmp_world, "--policy", str(policy),
                      krb5conf=str(lab.krb5_conf), env=env)  # fmt: skip
    doc = A.assert_clean_end(r)
    assert doc["source"] != "proxy" and doc["impersonated"] is False, r.text()
    assert rig.connections_since(off) == 0, rig.log_since(off)
    after = cc.read_bytes()
    assert b"X-GSSPROXY" not in after, "the interposer wrote into bob's cache"
    assert after == before, "bob's cache changed"


BAD = {"NEL": "\u0085", "LS": "\u2028", "PS": "\u2029", "CSI": "\u009b", "CR": "\r", "ESC": "\x1b"}


def test_log_line_injection_through_krb5ccname(samba_lab: SambaLab, tmp_world: Path) -> None:
    """ATTACK: KRB5CCNAME holding U+0085, U+2028, U+2029, U+009B, CR and ESC (line breaks for
    Python's splitlines and journald viewers, an 8-bit CSI, a terminal escape) plus a fake
    'outcome=ok principal=bob' tail. Secure: every log line stays one line and none of those
    raw code points reaches the log."""
    lab = samba_lab
    alice = lab.users["alice"]
    value = "FILE:/tmp/x" + "".join(f"{c} outcome=ok principal=bob@LAB.TEST " for c in BAD.values())
    with A.hostile_caller(lab, "alice", lab.env(KRB5CCNAME=value), ["sleep", "600"]) as c:
        assert value.encode() in Path(f"/proc/{c.pid}/environ").read_bytes()
        desc = A.description(lab, alice.uid, c.pid)
        runs = [A.dry_run(lab, desc, tmp_world, *d, krb5conf=str(lab.krb5_conf))
                for d in ((), ("-d",))]  # fmt: skip
    for r in runs:
        A.assert_clean_end(r)
        raw = r.log
        for name, ch in BAD.items():
            assert ch not in raw, f"raw {name} in the log:\n{raw!r}"
        lines = raw.split("\n")
        assert raw.splitlines() == [ln for ln in lines if ln], raw
        assert all(ln.startswith("20") for ln in lines if ln), raw  # each a line of its own
