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
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.samba import SambaLab
from tests.lab.smb_client import smb_session
from tests.proxy_fixtures import Rig
from tests.upcall_driver import DryRun, caller, description, dry_run

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


def _upcall(
    rig: Rig,
    user: str,
    work: Path,
    *args: str,
    env: dict[str, str] | None = None,
    policy: Path | None = None,
) -> DryRun:
    lab = rig.lab
    u = lab.users[user]
    # no ticket: the caller's KRB5CCNAME names a cache that does not exist
    cenv = env if env is not None else lab.env(KRB5CCNAME=f"FILE:{work}/none-{user}")
    with caller(lab, user, cenv) as pid:
        return dry_run(
            lab, description(lab, u.uid, pid), work, "--policy", str(policy or rig.policy), *args
        )


def test_user_without_ticket_is_impersonated_and_the_server_sees_her(
    pt_rig: Rig, tmp_world: Path
) -> None:
    lab = pt_rig.lab
    koff, goff = lab.kdc_log_offset(), pt_rig.log_offset()
    t = time.monotonic()
    r = _upcall(pt_rig, "alice", tmp_world)
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
