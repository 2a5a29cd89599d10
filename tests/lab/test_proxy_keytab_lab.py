"""Protected users through their own-keytab gssproxy service, against the Samba 4.17 AD DC.

gssproxy-conf renders, per protected user, a gssproxy service with their own client keytab and
no `impersonate`, and a policy rule `proxy: own-keytab` on its socket while the user stays in
deny_users. The helper (root, host namespaces) names the user on that socket; gssproxy gets
their TGT with their own key (AS exchange) and a service ticket: no S4U at all. The SMB server
and the KDC log are the judges. On the impersonating socket the same user is still refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.components.samba import SambaLab
from tests.components.smb_client import smb_session
from tests.proxy_fixtures import Rig, gssproxy_rig, proxy_upcall

pytestmark = pytest.mark.lab

# protected users whose keytab is outdated / absent / someone else's
STALE, MISSING, OTHERS = "hank", "ivy", "jack"

# Samba's KDC audit line per request: "Kerberos: AS-REQ|TGS-REQ <status> ipv4:<addr> <client>
# <server> key=value..." (an S4U2Proxy TGS-REQ carries impersonatee=<user>).
_AUDIT = re.compile(
    r"^Kerberos: (?P<kind>AS-REQ|TGS-REQ) (?P<status>[A-Z_]+) ipv4:\S+ (?P<client>\S+) "
    r"(?P<server>\S+)(?P<kv>.*)$"
)


def _audit(kdc: str) -> list[tuple[str, str, str, str]]:
    """(kind, status, client, server) of each audit line."""
    return [
        (m["kind"], m["status"], m["client"], m["server"])
        for ln in kdc.splitlines()
        if (m := _AUDIT.match(ln))
    ]


@pytest.fixture(autouse=True)
def _host_krb5(pt_lab: SambaLab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRB5_CONFIG", str(pt_lab.krb5_conf))


@pytest.fixture(scope="module")
def keytab_rig(pt_lab: SambaLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The generated config with protected users erin (NOT_DELEGATED; a current keytab),
    hank (a keytab made stale by a password change), ivy (no keytab file) and jack (erin's
    keytab)."""
    lab = pt_lab
    work = tmp_path_factory.mktemp("keytab-rig")
    for name, uid in ((STALE, 23041), (MISSING, 23042), (OTHERS, 23043)):
        if name not in lab.users:
            lab.add_user(name, uid)
    erin_kt = lab.export_keytab(f"erin@{lab.realm}", work / "erin.keytab")
    stale_kt = lab.export_keytab(f"{STALE}@{lab.realm}", work / f"{STALE}.keytab")
    lab.samba_tool("user", "setpassword", STALE, "--newpassword=Changed.Pw.4711!")
    extra = (
        "protected_users:\n"
        f"  - {{name: erin, uid: {lab.users['erin'].uid}, keytab: {erin_kt}}}\n"
        f"  - {{name: {STALE}, uid: {lab.users[STALE].uid}, keytab: {stale_kt}}}\n"
        f"  - {{name: {MISSING}, uid: {lab.users[MISSING].uid}, keytab: {work}/absent.keytab}}\n"
        f"  - {{name: {OTHERS}, uid: {lab.users[OTHERS].uid}, keytab: {erin_kt}}}\n"
    )
    with gssproxy_rig(lab, "CLIENT1$", lab.base / "client1.keytab", work, extra) as rig:
        yield rig


def _own_sock(rig: Rig, user: str) -> Path:
    return rig.socket.parent / f"protected-{user}.sock"


def test_protected_user_gets_own_credentials_not_impersonation(
    keytab_rig: Rig, tmp_world: Path
) -> None:
    rig, lab = keytab_rig, keytab_rig.lab
    policy = rig.policy.read_text()
    assert "proxy: own-keytab" in policy and "- erin\n" in policy  # deny-listed all the same
    koff, goff = lab.kdc_log_offset(), rig.log_offset()
    r = proxy_upcall(rig, "erin", tmp_world)
    assert r.ok, (r.doc, r.stderr, rig.log_since(goff))
    assert (r.doc["source"], r.doc["principal"], r.doc["impersonated"]) == (
        "proxy-keytab",
        "erin@LAB.TEST",
        False,
    )
    trail = r.trail_text()
    assert "local left no-credentials" in trail, trail
    assert f"proxy-keytab note erin@LAB.TEST via {_own_sock(rig, 'erin')}" in trail, trail
    assert "proxy-keytab ok erin@LAB.TEST for cifs/dc1.lab.test (own TGT)" in trail, trail
    assert "S4U" not in trail.replace("no S4U", "")
    assert r.msg is not None
    s = smb_session(lab, r.msg.blob, r.msg.session_key)
    assert s.tree_connect_signed and s.server_user == "erin"
    kdc = lab.kdc_log_since(koff)
    ok = [a for a in _audit(kdc) if a[1] == "SUCCESS"]
    # her own AS exchange (preauth with her key), then one TGS-REQ with her own TGT
    assert ok == [
        ("AS-REQ", "SUCCESS", "erin@LAB.TEST", "krbtgt/LAB.TEST@LAB.TEST"),
        ("TGS-REQ", "SUCCESS", "erin@LAB.TEST", "cifs/dc1.lab.test@LAB.TEST"),
    ], kdc
    assert "impersonatee=" not in kdc, kdc  # no S4U2Proxy
    assert "CLIENT1$" not in kdc  # no S4U2Self: the impersonator was not involved at all
    print(
        "KDC evidence, own keytab:", *(ln for ln in kdc.splitlines() if _AUDIT.match(ln)), sep="\n"
    )
    print(r.trail_text())


def test_protected_user_is_still_refused_on_the_impersonating_socket(
    keytab_rig: Rig, tmp_world: Path
) -> None:
    rig, lab = keytab_rig, keytab_rig.lab
    own = f"  socket: {_own_sock(rig, 'erin')}\n  proxy: own-keytab\n"
    text = rig.policy.read_text()
    assert own in text
    imp = rig.write_policy(
        "erin-imp.yaml", text.replace(own, f"  socket: {rig.socket}\n  proxy: impersonate\n")
    )
    goff, koff = rig.log_offset(), lab.kdc_log_offset()
    r = proxy_upcall(rig, "erin", tmp_world, policy=imp)
    assert r.doc["reason"] == "policy-denied", r.doc
    assert "proxy skipped erin is in deny_users" in r.trail_text()
    assert rig.connections_since(goff) == 0, rig.log_since(goff)
    assert "impersonatee=" not in lab.kdc_log_since(koff)
    # aiming an own-keytab rule at the impersonating socket is refused by the parser
    wrong = rig.write_policy(
        "erin-wrong.yaml", text.replace(own, f"  socket: {rig.socket}\n  proxy: own-keytab\n")
    )
    r = proxy_upcall(rig, "erin", tmp_world, policy=wrong)
    assert (
        r.doc["reason"] == "bad-policy"
        and "one socket is one gssproxy service" in (r.doc["message"])
    ), r.doc
    assert rig.connections_since(goff) == 0


@pytest.mark.parametrize(
    ("user", "gss_text"),
    [
        (STALE, "Preauthentication failed"),  # the KDC refused the old key
        (MISSING, "No credentials cache found"),  # no key: gssproxy falls back to its ccache
        (OTHERS, "No credentials cache found"),
    ],
)
def test_keytab_failures_are_keytab_failed(
    keytab_rig: Rig, tmp_world: Path, user: str, gss_text: str
) -> None:
    rig, lab = keytab_rig, keytab_rig.lab
    koff = lab.kdc_log_offset()
    r = proxy_upcall(rig, user, tmp_world)
    assert (r.doc["outcome"], r.doc["reason"]) == ("failed", "keytab-failed"), r.doc
    assert gss_text in r.doc["message"] and f"{user}@LAB.TEST" in r.doc["hint"], r.doc
    assert "proxy-keytab left keytab-failed" in r.trail_text()
    kdc = _audit(lab.kdc_log_since(koff))
    if user == STALE:
        assert (
            "AS-REQ",
            "ERR_PREAUTH_FAILED",
            f"{user}@LAB.TEST",
            "krbtgt/LAB.TEST@LAB.TEST",
        ) in kdc
    else:
        assert not [a for a in kdc if a[2].startswith(f"{user}@")], kdc  # never reached the KDC
    assert not [a for a in kdc if a[0] == "TGS-REQ" and a[2].startswith(f"{user}@")]
