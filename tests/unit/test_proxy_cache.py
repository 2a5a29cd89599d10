"""ProxyCache: expiry at the credential's end minus the margin, LRU bounds, clear; the
parent's strict parse of a worker's offer; the worker's check of a blob's shape."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from upcall.errors import WorkerProtocolError
from upcall.sources.proxy_cache import (
    CRED_MAX,
    CacheKey,
    ProxyCache,
    gssproxy_blob_principal,
    parse_cred,
)
from upcall.worker import child


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _key(user: str = "alice", host: str = "fs1") -> CacheKey:
    return CacheKey(f"{user}@LAB.TEST", host, "/run/gssproxy/cifs/cifs.sock")


def test_entry_lives_until_the_credential_end_minus_the_margin() -> None:
    clock = Clock()
    c = ProxyCache(margin=300, clock=clock)
    assert c.put(_key(), b"blob", int(clock.now) + 3600)
    clock.now += 3600 - 301
    assert c.get(_key()) == b"blob"
    clock.now += 1
    assert c.get(_key()) is None and len(c) == 0 and c.size == 0


def test_not_kept_when_ending_within_the_margin_empty_or_oversized() -> None:
    clock = Clock()
    c = ProxyCache(margin=300, clock=clock)
    assert not c.put(_key(), b"x", int(clock.now) + 299)
    assert not c.put(_key(), b"", int(clock.now) + 3600)
    assert not c.put(_key(), b"x" * (CRED_MAX + 1), int(clock.now) + 3600)
    assert len(c) == 0


def test_keys_are_user_server_and_socket() -> None:
    clock = Clock()
    c = ProxyCache(clock=clock)
    c.put(_key("alice", "fs1"), b"a1", int(clock.now) + 3600)
    assert c.get(_key("bob", "fs1")) is None and c.get(_key("alice", "fs2")) is None
    other = CacheKey("alice@LAB.TEST", "fs1", "/run/other.sock")
    assert c.get(other) is None and c.get(_key("alice", "fs1")) == b"a1"


def test_replacing_an_entry_keeps_the_byte_count() -> None:
    clock = Clock()
    c = ProxyCache(clock=clock)
    c.put(_key(), b"old-blob", int(clock.now) + 3600)
    c.put(_key(), b"new", int(clock.now) + 3600)
    assert c.get(_key()) == b"new" and c.size == 3
    assert not c.put(_key(), b"late", int(clock.now))  # a refused replacement drops the old
    assert c.get(_key()) is None and c.size == 0


def test_entry_bound_evicts_the_least_recently_used() -> None:
    clock = Clock()
    c = ProxyCache(max_entries=2, clock=clock)
    end = int(clock.now) + 3600
    c.put(_key("a"), b"a", end)
    c.put(_key("b"), b"b", end)
    assert c.get(_key("a")) == b"a"  # now b is the oldest
    c.put(_key("c"), b"c", end)
    assert c.get(_key("b")) is None and c.get(_key("a")) == b"a" and c.get(_key("c")) == b"c"


def test_byte_bound_evicts_until_it_fits() -> None:
    clock = Clock()
    c = ProxyCache(max_bytes=10, clock=clock)
    end = int(clock.now) + 3600
    c.put(_key("a"), b"aaaa", end)
    c.put(_key("b"), b"bbbb", end)
    c.put(_key("c"), b"cccc", end)
    assert (len(c), c.size) == (2, 8) and c.get(_key("a")) is None
    assert not c.put(_key("d"), b"d" * 11, end)  # never fits


def test_clear_forgets_everything() -> None:
    clock = Clock()
    c = ProxyCache(clock=clock)
    c.put(_key("a"), b"a", int(clock.now) + 3600)
    c.put(_key("b"), b"b", int(clock.now) + 3600)
    c.clear()
    assert (len(c), c.size) == (0, 0) and c.get(_key("a")) is None


def test_parse_cred_accepts_a_well_formed_offer_or_none() -> None:
    assert parse_cred({"token": {}, "trail": []}) is None
    assert parse_cred({"cred": "00ff", "cred_expires": 1796151388}) == (b"\0\xff", 1796151388)


@pytest.mark.parametrize(
    "res",
    [
        {"cred": "00ff"},
        {"cred_expires": 1796151388},
        {"cred": "zz", "cred_expires": 1796151388},
        {"cred": "", "cred_expires": 1796151388},
        {"cred": "00" * (CRED_MAX + 1), "cred_expires": 1796151388},
        {"cred": "00", "cred_expires": True},
        {"cred": "00", "cred_expires": 1.5},
        {"cred": "00", "cred_expires": -1},
        {"cred": "00", "cred_expires": 2**41},
        {"cred": b"00", "cred_expires": 1796151388},
    ],
)
def test_parse_cred_refuses_a_malformed_offer(res: dict[str, object]) -> None:
    with pytest.raises(WorkerProtocolError):
        parse_cred(res)


def _princ(realm: str, *comps: str) -> bytes:
    out = struct.pack(">II", 1, len(comps)) + struct.pack(">I", len(realm)) + realm.encode()
    for c in comps:
        out += struct.pack(">I", len(c)) + c.encode()
    return out


def _blob(default: bytes, client: bytes, server: bytes) -> bytes:
    header = struct.pack(">HHHHII", 0x0504, 12, 1, 8, 0, 0)
    return header + default + client + server + b"\0" * 64


GP = _princ("X-GSSPROXY:", "Encrypted", "Credentials", "v1")


def test_blob_principal_is_the_client_of_an_x_gssproxy_entry() -> None:
    alice = _princ("LAB.TEST", "alice")
    assert gssproxy_blob_principal(_blob(alice, alice, GP)) == "alice@LAB.TEST"
    svc = _princ("LAB.TEST", "host", "fs1.lab.test")
    assert gssproxy_blob_principal(_blob(svc, svc, GP)) == "host/fs1.lab.test@LAB.TEST"


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x05\x03" + b"\0" * 40,
        _blob(_princ("LAB.TEST", "alice"), _princ("LAB.TEST", "bob"), GP),
        _blob(_princ("LAB.TEST", "alice"), _princ("LAB.TEST", "alice"),
              _princ("LAB.TEST", "krbtgt", "LAB.TEST")),  # a real ticket, not gssproxy's
        _blob(_princ("LAB.TEST", "alice"), _princ("LAB.TEST", "alice"), GP)[:40],
    ],
)  # fmt: skip
def test_blob_principal_refuses_anything_else(blob: bytes) -> None:
    assert gssproxy_blob_principal(blob) is None


def test_sweep_removes_only_the_killed_workers_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from upcall.sources import proxy

    monkeypatch.setattr(proxy, "_scratch_root", lambda: str(tmp_path))
    mine = tmp_path / f"{proxy.SCRATCH_PREFIX}4242-abc"
    other = tmp_path / f"{proxy.SCRATCH_PREFIX}42421-abc"  # pid 42421, not 4242
    unrelated = tmp_path / "cifs-upcall-proxy"
    for d in (mine, other, unrelated):
        d.mkdir()
    (mine / "cc").write_bytes(b"blob")
    proxy.sweep(4242)
    assert not mine.exists() and other.exists() and unrelated.exists()
    assert proxy.sweep in child._on_kill  # registered where the handler kills workers


def test_scratch_is_a_fresh_private_directory_named_for_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import stat

    from upcall.sources import proxy

    monkeypatch.setattr(proxy, "_scratch_root", lambda: str(tmp_path))
    a, b = proxy._scratch(), proxy._scratch()
    assert a != b  # never an existing directory, even for the same pid
    for d in (a, b):
        st = os.lstat(d)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
        assert os.path.basename(d).startswith(f"{proxy.SCRATCH_PREFIX}{os.getpid()}-")
    # a planted name is never taken over: every try finds it taken, and it stays as it was
    monkeypatch.setattr(os, "urandom", lambda n: b"\0" * n)
    planted = tmp_path / f"{proxy.SCRATCH_PREFIX}{os.getpid()}-{'00' * 6}"
    planted.symlink_to("/")
    with pytest.raises(FileExistsError):
        proxy._scratch()
    assert planted.is_symlink()


def test_remove_takes_the_scratch_away_whatever_it_holds(tmp_path: Path) -> None:
    from upcall.sources import proxy

    usual, odd = tmp_path / "usual", tmp_path / "odd"
    for d in (usual, odd):
        d.mkdir()
        for name in proxy.SCRATCH_FILES:
            (d / name).write_bytes(b"ccache")
    (odd / "cc.tmp").write_bytes(b"something else")  # not a name a worker writes
    proxy._remove(str(usual))
    proxy._remove(str(odd))
    proxy._remove(str(tmp_path / "gone"))  # already gone: nothing to do, no error
    assert not usual.exists() and not odd.exists()
