"""Impersonation through a real gssproxy against the Samba 4.17 AD DC (protocol transition).

The helper runs as root from the host namespace (`cifs-upcall --dry-run`), the caller process
lives in the lab's namespaces, gssproxy (generated config) runs in the lab's namespace and is
reached through its socket path. The SMB server is the judge: signed tree connect, read, and
the owner of a file the impersonated user writes.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.components.samba import SambaLab
from tests.components.smb_client import smb_session
from tests.proxy_fixtures import Rig, gssproxy_rig, proxy_upcall
from tests.upcall_driver import caller, description, dry_run

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True)
def _host_krb5(pt_lab: SambaLab, monkeypatch: pytest.MonkeyPatch) -> None:
    # The helper's host side (default realm for <login>@REALM) reads KRB5_CONFIG, as gssproxy.
    monkeypatch.setenv("KRB5_CONFIG", str(pt_lab.krb5_conf))


# Samba's KDC audit line per TGS-REQ: status, client address, client, server, then key=value.
_TGS = re.compile(
    r"^Kerberos: TGS-REQ (?P<status>\S+) ipv4:\S+ (?P<client>\S+) (?P<server>\S+)(?P<kv>.*)$"
)


@dataclass(frozen=True)
class S4u:
    self_: list[str]  # S4U2Self: the client account asks a ticket to itself for the user
    proxy: list[str]  # S4U2Proxy: a service ticket with impersonatee=<user>


def _s4u_lines(kdc: str, user: str) -> S4u:
    self_, proxy = [], []
    for ln in kdc.splitlines():
        m = _TGS.match(ln)
        if not m:
            continue
        if f"impersonatee={user}@" in m["kv"]:
            proxy.append(ln)
        elif m["client"].startswith(f"{user}@") and m["server"].split("@")[0].endswith("$"):
            self_.append(ln)
    return S4u(self_, proxy)


def test_user_without_ticket_is_impersonated_and_the_server_sees_her(
    pt_rig: Rig, tmp_world: Path
) -> None:
    lab = pt_rig.lab
    koff, goff = lab.kdc_log_offset(), pt_rig.log_offset()
    t = time.monotonic()
    r = proxy_upcall(pt_rig, "alice", tmp_world)
    took = time.monotonic() - t
    assert r.ok, (r.doc, r.stderr, pt_rig.log_since(goff))
    assert (r.doc["source"], r.doc["principal"], r.doc["impersonated"]) == (
        "proxy",
        "alice@LAB.TEST",
        True,
    )
    trail = r.trail_text()
    assert "ccache failed" in trail and "local left no-credentials" in trail, trail
    assert "proxy ok alice@LAB.TEST for cifs/dc1.lab.test" in trail, trail
    print(f"impersonated upcall: {took:.3f}s wall, helper {r.doc['seconds']}s")
    assert r.msg is not None
    fname = f"imp-{os.getpid()}-{time.monotonic_ns()}.txt"
    s = smb_session(lab, r.msg.blob, r.msg.session_key, write_path=fname)
    assert s.tree_connect_signed and s.content == b"hello from lab share\n"
    assert s.server_user == "alice" and s.written_owner == "alice"
    kdc = lab.kdc_log_since(koff)
    s4u = _s4u_lines(kdc, "alice")
    assert len(s4u.self_) == 1 and len(s4u.proxy) == 1, kdc
    assert pt_rig.connections_since(goff) >= 1
    print(r.trail_text())


@pytest.fixture(scope="module")
def nodeleg_rig(pt_lab: SambaLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A client account trusted for protocol transition but with no msDS-AllowedToDelegateTo."""
    keytab = pt_lab.add_computer("nodeleg")
    pt_lab.samba_tool("delegation", "for-any-protocol", "NODELEG$", "on")
    with gssproxy_rig(pt_lab, "NODELEG$", keytab, tmp_path_factory.mktemp("nodeleg")) as rig:
        yield rig


@pytest.fixture(scope="module")
def disabled_user(pt_lab: SambaLab) -> str:
    if "gina" not in pt_lab.users:
        pt_lab.add_user("gina", 23021)
        pt_lab.samba_tool("user", "disable", "gina")
    return "gina"


def _kdc_reasons(kdc: str) -> list[str]:
    """reason= of the KDC's refused TGS-REQs."""
    return [
        ln.split("reason=", 1)[1]
        for ln in kdc.splitlines()
        if (m := _TGS.match(ln)) and m["status"].startswith("ERR_") and "reason=" in ln
    ]


def test_refusals_are_classified_by_the_s4u_step_that_failed(
    pt_rig: Rig, nodeleg_rig: Rig, disabled_user: str, tmp_world: Path
) -> None:
    """Samba 4.17: NOT_DELEGATED and a missing delegation right both fail at S4U2Proxy with
    KDC_ERR_BADOPTION (only the KDC's reason= differs); a disabled or unknown account is
    refused at S4U2Self."""
    lab = pt_rig.lab
    unknown = pt_rig.write_policy(
        "unknown.yaml",
        pt_rig.policy.read_text().replace(
            "principal_map: {}", "principal_map: {bob: nosuch@LAB.TEST}"
        ),
    )
    cases = [
        (pt_rig, "erin", None, "s4u2proxy-refused",
         "Missing forwardable flag on ticket for constrained delegation"),
        (nodeleg_rig, "alice", None, "s4u2proxy-refused", "Constrained delegation not allowed"),
        (pt_rig, disabled_user, None, "s4u2self-refused", "Principal may not act as client"),
        (pt_rig, "bob", unknown, "s4u2self-refused", "S4U2Self principal to impersonate not found"),
    ]  # fmt: skip
    for rig, user, policy, reason, kdc_reason in cases:
        off = lab.kdc_log_offset()
        r = proxy_upcall(rig, user, tmp_world, policy=policy)
        assert (r.doc["outcome"], r.doc["reason"]) == ("failed", reason), (user, r.doc)
        assert f"proxy left {reason}" in r.trail_text()
        assert "no-credentials" in r.doc["hint"]  # the own-ticket failure is kept in the hint
        assert kdc_reason in _kdc_reasons(lab.kdc_log_since(off)), (user, kdc_reason)


def test_samba_417_does_not_protect_protected_users_so_deny_users_must(
    pt_rig: Rig, tmp_world: Path
) -> None:
    """dave is in Protected Users, yet Samba 4.17's KDC delegates him (forwardable S4U2Self,
    S4U2Proxy granted). The helper's deny_users is the guard that holds regardless."""
    lab = pt_rig.lab
    off = lab.kdc_log_offset()
    r = proxy_upcall(pt_rig, "dave", tmp_world)
    assert r.ok and r.doc["principal"] == "dave@LAB.TEST", r.doc
    s4u = _s4u_lines(lab.kdc_log_since(off), "dave")
    assert len(s4u.proxy) == 1 and " SUCCESS " in s4u.proxy[0]


def test_uid0_and_deny_listed_users_never_reach_gssproxy(pt_rig: Rig, tmp_world: Path) -> None:
    lab = pt_rig.lab
    deny = pt_rig.write_policy(
        "deny.yaml",
        pt_rig.policy.read_text().replace(
            "deny_users:\n- root\n", "deny_users:\n- root\n- dave\n- erin\n"
        ),
    )
    for user in ("dave", "erin"):
        goff, koff = pt_rig.log_offset(), lab.kdc_log_offset()
        r = proxy_upcall(pt_rig, user, tmp_world, policy=deny)
        assert r.doc["reason"] == "policy-denied", r.doc
        assert f"proxy skipped {user} is in deny_users" in r.trail_text()
        assert "impersonation is not used" in r.doc["hint"]
        assert pt_rig.connections_since(goff) == 0, pt_rig.log_since(goff)
        assert not _s4u_lines(lab.kdc_log_since(koff), user).self_
    goff = pt_rig.log_offset()
    with caller(lab, None, lab.env(KRB5CCNAME=f"FILE:{tmp_world}/none-root")) as pid:
        r = dry_run(lab, description(lab, 0, pid), tmp_world, "--policy", str(pt_rig.policy))
    assert r.doc["reason"] == "policy-denied", r.doc
    assert "proxy skipped uid 0 is never impersonated" in r.trail_text()
    assert pt_rig.connections_since(goff) == 0


def test_local_first_valid_ticket_never_impersonates_expired_one_does_once(
    pt_rig: Rig, tmp_world: Path
) -> None:
    lab = pt_rig.lab
    alice = lab.users["alice"]
    cc = f"FILE:{tmp_world}/cc.alice"
    lab.kinit(alice, cc)
    goff, koff = pt_rig.log_offset(), lab.kdc_log_offset()
    r = proxy_upcall(pt_rig, "alice", tmp_world, env=lab.env(KRB5CCNAME=cc))
    assert r.ok and (r.doc["source"], r.doc["impersonated"]) == ("ccache", False), r.doc
    kdc = lab.kdc_log_since(koff)
    assert _s4u_lines(kdc, "alice") == S4u([], []), kdc
    assert "impersonatee=" not in kdc
    assert pt_rig.connections_since(goff) == 0
    assert "proxy" not in r.trail_text().replace("then proxy", "")  # tried, never reached

    expiring = f"FILE:{tmp_world}/cc.alice.short"
    lab.kinit(alice, expiring, lifetime="5s")
    time.sleep(6)
    goff, koff = pt_rig.log_offset(), lab.kdc_log_offset()
    r = proxy_upcall(pt_rig, "alice", tmp_world, env=lab.env(KRB5CCNAME=expiring))
    assert r.ok and (r.doc["source"], r.doc["impersonated"]) == ("proxy", True), r.doc
    assert "has expired" in r.trail_text() and "local left expired-credentials" in r.trail_text()
    s4u = _s4u_lines(lab.kdc_log_since(koff), "alice")
    assert len(s4u.self_) == 1 and len(s4u.proxy) == 1, lab.kdc_log_since(koff)
    assert all(" SUCCESS " in ln for ln in s4u.self_ + s4u.proxy)
    print("KDC evidence, expired ticket:", *s4u.self_, *s4u.proxy, sep="\n")
    assert r.msg is not None
    s = smb_session(lab, r.msg.blob, r.msg.session_key)
    assert s.server_user == "alice" and s.tree_connect_signed


def test_proxy_first_and_proxy_only_modes(pt_rig: Rig, tmp_world: Path) -> None:
    lab = pt_rig.lab
    text = pt_rig.policy.read_text()
    first = pt_rig.write_policy(
        "pfirst.yaml",
        text.replace("  mode: local-first\n  socket", "  mode: proxy-first\n  socket"),
    )
    only = pt_rig.write_policy(
        "ponly.yaml", text.replace("  mode: local-first\n  socket", "  mode: proxy-only\n  socket")
    )
    cc = f"FILE:{tmp_world}/cc.bob"
    lab.kinit(lab.users["bob"], cc)
    r = proxy_upcall(pt_rig, "bob", tmp_world, env=lab.env(KRB5CCNAME=cc), policy=first)
    assert r.ok and r.doc["source"] == "proxy", r.doc  # own ticket valid, yet proxy first
    r = proxy_upcall(pt_rig, "erin", tmp_world, policy=first)  # proxy refused, then local: none
    assert r.doc["reason"] == "s4u2proxy-refused" and "local left no-credentials" in r.trail_text()
    with caller(lab, None, lab.env()) as pid:
        r = dry_run(lab, description(lab, 0, pid), tmp_world, "--policy", str(only))
    assert r.doc["reason"] == "policy-denied" and "proxy-only" in r.doc["message"], r.doc
    assert "ccache" not in r.trail_text()  # fails closed: own credentials not even tried


def test_broken_policy_fails_closed(pt_rig: Rig, tmp_world: Path) -> None:
    text = pt_rig.policy.read_text()
    bad = pt_rig.write_policy("bad.yaml", text + "surprise: 1\n")
    line = text.count("\n") + 1
    goff = pt_rig.log_offset()
    r = proxy_upcall(pt_rig, "alice", tmp_world, policy=bad)
    assert r.doc["reason"] == "bad-policy", r.doc
    assert f"{bad}:{line}: policy: unknown key" in r.doc["message"], r.doc
    assert r.doc["trail"] == [] and pt_rig.connections_since(goff) == 0
    bad.chmod(0o666)
    r = proxy_upcall(pt_rig, "alice", tmp_world, policy=bad)
    assert r.doc["reason"] == "bad-policy" and "world-writable" in r.doc["message"]
