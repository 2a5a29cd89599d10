"""Faults around impersonation: gssproxy stopped, gssproxy frozen, KDC stopped. Each upcall
ends within its deadline with its own reason, and the next one after recovery succeeds."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.components.samba import SambaLab
from tests.proxy_fixtures import Rig, gssproxy_rig, proxy_upcall
from tests.upcall_driver import DryRun

pytestmark = pytest.mark.lab

DEADLINE = 3.0
SLACK = 1.5  # process start-up and the caller set-up around the helper's own deadline


@pytest.fixture
def rig(pt_lab: SambaLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setenv("KRB5_CONFIG", str(pt_lab.krb5_conf))
    with gssproxy_rig(pt_lab, "CLIENT1$", pt_lab.base / "client1.keytab", tmp_path) as r:
        yield r


def _upcall(rig: Rig, work: Path) -> tuple[DryRun, float]:
    t = time.monotonic()
    r = proxy_upcall(rig, "alice", work, "--deadline", str(DEADLINE))
    return r, time.monotonic() - t


def test_gssproxy_stopped(rig: Rig, tmp_world: Path) -> None:
    rig.stack.close()  # SIGTERM, waited for: the socket file stays behind (stale)
    r, took = _upcall(rig, tmp_world)
    assert r.doc["reason"] == "proxy-unavailable", r.doc
    assert "0x" not in r.doc["hint"] and "gssproxy" in r.doc["hint"]
    assert took < DEADLINE + SLACK
    rig.socket.unlink()  # no socket at all: ENOENT, same reason
    r, _ = _upcall(rig, tmp_world)
    assert r.doc["reason"] == "proxy-unavailable", r.doc
    rig.restart()
    r, _ = _upcall(rig, tmp_world)
    assert r.ok and r.doc["source"] == "proxy", r.doc


def test_gssproxy_frozen(rig: Rig, tmp_world: Path) -> None:
    os.kill(rig.gp.pid, signal.SIGSTOP)
    try:
        r, took = _upcall(rig, tmp_world)
        assert r.doc["reason"] == "deadline-exceeded", r.doc
        assert "gssproxy" in r.doc["message"]
        assert took < DEADLINE + SLACK, took
        print(f"frozen gssproxy: upcall ended after {took:.2f}s (deadline {DEADLINE}s)")
    finally:
        os.kill(rig.gp.pid, signal.SIGCONT)
    r, _ = _upcall(rig, tmp_world)
    assert r.ok and r.doc["source"] == "proxy", r.doc


def test_kdc_stopped(rig: Rig, tmp_world: Path) -> None:
    lab = rig.lab
    lab.stop()
    try:
        r, took = _upcall(rig, tmp_world)
        assert r.doc["reason"] == "kdc-unreachable", r.doc
        assert took < DEADLINE + SLACK, took
        print(f"KDC stopped: upcall ended after {took:.2f}s: {r.doc['message']}")
    finally:
        lab.start()  # the lab is session-wide: always bring it back
    r, _ = _upcall(rig, tmp_world)
    assert r.ok and r.doc["source"] == "proxy", r.doc
