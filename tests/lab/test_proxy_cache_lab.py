"""Cached impersonation against the Samba 4.17 lab: what a repeat costs at the KDC.

Each worker runs in a fresh interpreter (tests/proxy_worker.py); the only thing a repeat gets
from the first is the opaque blob the first handed back (`cred`). The KDC log counts the
requests: AS-REQ (gssproxy's own TGT for CLIENT1$, one refused for pre-authentication then
one granted), S4U2Self and S4U2Proxy TGS-REQs. The SMB server judges the repeat's token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.components.samba import SambaLab
from tests.components.smb_client import smb_session
from tests.lab.test_proxy_lab import _s4u_lines
from tests.proxy_fixtures import Rig, gssproxy_rig
from tests.proxy_worker import run_worker
from upcall.krb5.spnego import MechOID, neg_token_init

pytestmark = pytest.mark.lab

_AS = re.compile(r"^Kerberos: AS-REQ (?P<status>\S+) ipv4:\S+ (?P<client>\S+) (?P<server>\S+)")
_REQ = re.compile(r"^Kerberos: (AS|TGS)-REQ \S+ ipv4:")  # one status line per request


def _sync(root: Path) -> None:
    """The service as cached impersonation needs it: gssproxy sends the updated credential
    (with the S4U2Proxy ticket) back only with allow_client_ccache_sync and no ccache of its
    own in cred_store (gp_check_sync_creds)."""
    conf = root / "etc/gssproxy/50-cifs-upcall-smb.conf"
    lines = [ln for ln in conf.read_text().splitlines() if "cred_store = ccache:" not in ln]
    if not any("allow_client_ccache_sync" in ln for ln in lines):  # the generator's own now
        lines.append("  allow_client_ccache_sync = yes")
    conf.write_text("\n".join([*lines, ""]))


@pytest.fixture(scope="module")
def sync_rig(pt_lab: SambaLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    keytab, work = pt_lab.base / "client1.keytab", tmp_path_factory.mktemp("sync")
    with gssproxy_rig(pt_lab, "CLIENT1$", keytab, work, edit=_sync) as rig:
        yield rig


def _worker(rig: Rig, user: str, cached: str | None = None) -> tuple[dict[str, Any], str]:
    """One fresh worker for `user`; its result and the KDC log it caused."""
    lab = rig.lab
    off = lab.kdc_log_offset()
    plan = {"host": lab.fqdn, "principal": f"{user}@{lab.realm}", "socket": str(rig.socket),
            "krb5_config": str(lab.krb5_conf), "cached": cached}  # fmt: skip
    out = run_worker(plan)
    assert "ok" in out, out
    return out["ok"], lab.kdc_log_since(off)


def _requests(kdc: str) -> list[str]:
    return [ln for ln in kdc.splitlines() if _REQ.match(ln)]


def _trail(res: dict[str, Any]) -> str:
    return "\n".join(f"{a['source']} {a['outcome']} {a['detail']}" for a in res["trail"])


def _accepted(lab: SambaLab, res: dict[str, Any], user: str) -> None:
    tok = res["token"]
    blob = neg_token_init(MechOID.KRB5, bytes.fromhex(tok["token"]))
    s = smb_session(lab, blob, bytes.fromhex(tok["session_key"]))
    assert s.tree_connect_signed and s.server_user == user, s


def test_repeat_with_the_blob_makes_no_kdc_request(sync_rig: Rig) -> None:
    lab = sync_rig.lab
    first, kdc = _worker(sync_rig, "alice")
    reqs, s4u = _requests(kdc), _s4u_lines(kdc, "alice")
    as_ = [m["status"] for ln in reqs if (m := _AS.match(ln))]
    print("first:", *reqs, sep="\n  ")
    # no ccache in cred_store: gssproxy gets CLIENT1$'s TGT per call (AS, pre-auth round)
    assert as_ == ["ERR_PREAUTH_REQUIRED", "SUCCESS"], kdc
    assert len(s4u.self_) == 1 and len(s4u.proxy) == 1 and len(reqs) == 4, kdc
    assert 0 < len(first["cred"]) // 2 <= 16 * 1024 and first["cred_expires"] > 0
    _accepted(lab, first, "alice")

    again, kdc = _worker(sync_rig, "alice", first["cred"])
    assert _requests(kdc) == [], kdc
    assert ": cached credential: no S4U2Self" in _trail(again), _trail(again)
    assert again["token"]["principal"] == "alice@LAB.TEST"
    assert again["token"]["token"] != first["token"]["token"]  # a new authenticator and key
    _accepted(lab, again, "alice")
    print("repeat: 0 KDC requests;", len(first["cred"]) // 2, "byte blob")

    # gssproxy left the credential as it was: nothing new for the daemon to keep
    assert "cred" not in again, sorted(again)
    third, kdc = _worker(sync_rig, "alice", first["cred"])  # the blob serves again and again
    assert _requests(kdc) == [] and "cred" not in third, kdc

    sync_rig.restart()  # the blob key is the service keytab's, not gssproxy's runtime secret
    after, kdc = _worker(sync_rig, "alice", first["cred"])
    assert _requests(kdc) == [], kdc
    _accepted(lab, after, "alice")


def test_a_blob_never_makes_another_user_and_bad_ones_fall_back(sync_rig: Rig) -> None:
    lab = sync_rig.lab
    alice, _ = _worker(sync_rig, "alice")
    bob, kdc = _worker(sync_rig, "bob", alice["cred"])
    assert "not a gssproxy credential of bob@LAB.TEST" in _trail(bob), _trail(bob)
    assert bob["token"]["principal"] == "bob@LAB.TEST"
    assert len(_s4u_lines(kdc, "bob").self_) == 1 and not _s4u_lines(kdc, "alice").proxy, kdc
    _accepted(lab, bob, "bob")
    junk, _ = _worker(sync_rig, "carol", "00" * 64)
    assert "cached credential not used" in _trail(junk) and "cred" in junk
    assert junk["token"]["principal"] == "carol@LAB.TEST"
    # the right shape, but gssproxy cannot use it: it silently acquires afresh (S4U2Self),
    # which the worker sees (the interposer rewrote the staged ccache) and says so
    raw = bytearray.fromhex(alice["cred"])
    raw[-200] ^= 0xFF
    tampered, kdc = _worker(sync_rig, "alice", raw.hex())
    assert "gssproxy renewed the cached credential (S4U2Self)" in _trail(tampered)
    assert "(S4U2Proxy)" in _trail(tampered), _trail(tampered)
    assert len(_s4u_lines(kdc, "alice").self_) == 1, kdc
    _accepted(lab, tampered, "alice")


def test_generated_service_repeat_makes_no_kdc_request(pt_rig: Rig) -> None:
    """The generator's service has no ccache of its own and allow_client_ccache_sync: the
    blob carries the S4U2Proxy ticket, so a repeat costs nothing at the KDC."""
    first, _ = _worker(pt_rig, "carol")
    again, kdc = _worker(pt_rig, "carol", first["cred"])
    s4u = _s4u_lines(kdc, "carol")
    assert (len(s4u.self_), len(s4u.proxy), len(_requests(kdc))) == (0, 0, 0), kdc
    _accepted(pt_rig.lab, again, "carol")
