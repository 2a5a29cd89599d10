"""`cifs-upcall doctor` against the live lab: the real request-key (-l on a tree of our own), a
real gssproxy (the generated service, tests/proxy_fixtures.py), Samba 4.17's KDC, GSSAPI.

A clean setup passes; then one precondition at a time is broken and doctor must name it with
its fix and exit 1. doctor runs as a subprocess of this worktree's code, inside the lab's
network namespace (where the KDC is), as root.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.proxy_fixtures import Rig

REPO = Path(__file__).resolve().parents[2]
HELPER = "/opt/cifs-upcall/bin/cifs-upcall"
pytestmark = [pytest.mark.lab]


@dataclass
class Tree:
    """A /etc of our own: request-key.d, gssproxy (a copy of the rig's), the policy line."""

    root: Path
    rig: Rig

    @property
    def rk(self) -> Path:
        return self.root / "etc/request-key.d"

    def line(self, args: str = "", name: str = "cifs-upcall.conf", desc: str = "ver=0x2;*") -> None:
        (self.rk / name).write_text(
            f"create cifs.spnego {desc} * {HELPER} --policy {self.rig.policy} {args} %k\n"
        )

    def doctor(self, *extra: str, user: str | None = "bob") -> tuple[int, list[str], str]:
        lab = self.rig.lab
        argv = [sys.executable, "-m", "upcall", "doctor", "--root", str(self.root),
                "--server", lab.fqdn, *extra]  # fmt: skip
        if user:
            argv += ["--user", user]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KRB5_CONFIG": str(lab.krb5_conf),
               "PYTHONPATH": str(REPO)}  # fmt: skip
        res = subprocess.run(
            ["ip", "netns", "exec", lab.ns, "env", "-i", *(f"{k}={v}" for k, v in env.items()),
             *argv], capture_output=True, text=True, timeout=120, cwd=REPO,
        )  # fmt: skip
        return res.returncode, res.stdout.splitlines(), res.stderr


@pytest.fixture
def tree(pt_rig: Rig, tmp_path: Path) -> Iterator[Tree]:
    root = tmp_path / "root"
    (root / "etc/request-key.d").mkdir(parents=True)
    shutil.copytree(pt_rig.root / "etc/gssproxy", root / "etc/gssproxy")
    t = Tree(root, pt_rig)
    t.line()
    yield t


def _fails(lines: list[str]) -> list[str]:
    return [ln for ln in lines if ln.startswith("FAIL ")]


def test_clean_lab_passes(tree: Tree) -> None:
    rc, out, err = tree.doctor()
    text = "\n".join(out)
    assert rc == 0, text + err
    assert not _fails(out), text
    names = [ln.split(":")[0] for ln in out[:-1]]
    # the order an upcall meets them
    for want in ("ok request-key", "ok request-key-args", "ok policy", "ok gssproxy-socket",
                 "ok gssproxy-service", "ok keytab", "ok krb5", "ok krb5-forwardable", "ok kdc",
                 "ok clock", "ok spn", "ok dry-run bob@"):  # fmt: skip
        assert any(n.startswith(want) for n in names), (want, text)
    assert any("dry-run bob@" in ln and "(impersonated)" in ln for ln in out), text
    print(text)


def test_json(tree: Tree) -> None:
    rc, out, _ = tree.doctor("--json", user=None)
    doc = json.loads(out[0])
    assert rc == 0 and doc["ok"] is True
    assert {c["status"] for c in doc["checks"]} <= {"ok", "warn"}


def _one_fail(tree: Tree, check: str, *, user: str | None = "bob") -> str:
    rc, out, err = tree.doctor(user=user)
    fails = _fails(out)
    assert rc == 1, "\n".join(out) + err
    mine = [f for f in fails if f.startswith(f"FAIL {check}")]
    assert mine, "\n".join(out)
    assert "; fix: " in mine[0]
    print(mine[0])
    return mine[0]


def test_bad_flag_in_request_key_line(tree: Tree) -> None:
    tree.line("--verbose")
    line = _one_fail(tree, "request-key-args", user=None)
    assert "unrecognized arguments: --verbose" in line


def test_cifs_utils_line_wins(tree: Tree) -> None:
    # cifs-utils' conffile, and ours written with '* *' in a file read after it: a tie, the
    # first line read wins (request-key's own matching decides, not doctor)
    (tree.rk / "cifs-upcall.conf").unlink()
    (tree.rk / "cifs.spnego.conf").write_text("create cifs.spnego * * /usr/sbin/cifs.upcall %k\n")
    tree.line(name="zz-cifs-upcall.conf", desc="*")
    line = _one_fail(tree, "request-key", user=None)
    assert "cifs-utils' line wins" in line and "cifs.spnego.conf:1" in line
    assert "ver=0x2;*" in line  # the fix names the line that beats it


def test_group_writable_policy(tree: Tree, tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    shutil.copy(tree.rig.policy, bad)
    bad.chmod(0o664)
    (tree.rk / "cifs-upcall.conf").write_text(
        f"create cifs.spnego ver=0x2;* * {HELPER} --policy {bad} %k\n"
    )
    line = _one_fail(tree, "policy", user=None)
    assert "group- or world-writable (mode 664)" in line and "chmod go-w" in line


def test_world_writable_socket_directory(tree: Tree) -> None:
    d = tree.rig.socket.parent
    d.chmod(0o777)
    try:
        line = _one_fail(tree, "gssproxy-socket", user=None)
    finally:
        d.chmod(0o700)
    assert "mode 0777" in line and f"chmod 0700 {d}" in line


def test_gssproxy_stopped(tree: Tree) -> None:
    tree.rig.stop()
    try:
        line = _one_fail(tree, "gssproxy-socket", user=None)
    finally:
        tree.rig.restart()
    assert "not answering" in line and "start gssproxy" in line


def _entry(principal: list[str], realm: str) -> bytes:
    def counted(s: str) -> bytes:
        return struct.pack(">H", len(s)) + s.encode()

    body = struct.pack(">H", len(principal)) + counted(realm)
    body += b"".join(counted(c) for c in principal)
    body += struct.pack(">IIBH", 1, 0, 1, 18) + counted("\0" * 32) + struct.pack(">I", 1)
    return struct.pack(">i", len(body)) + body


def test_keytab_first_entry_is_another_principal(tree: Tree, tmp_path: Path) -> None:
    lab = tree.rig.lab
    orig = (lab.base / "client1.keytab").read_bytes()
    kt = tmp_path / "other-first.keytab"
    kt.write_bytes(orig[:2] + _entry(["host", "other.lab.test"], lab.realm) + orig[2:])
    kt.chmod(0o600)
    conf = next((tree.root / "etc/gssproxy").glob("50-cifs-upcall-smb.conf"))
    conf.write_text(conf.read_text().replace(str(lab.base / "client1.keytab"), str(kt)))
    line = _one_fail(tree, "keytab", user=None)
    assert f"first entry is host/other.lab.test@{lab.realm}, not CLIENT1$@{lab.realm}" in line


def test_clock_ten_minutes_off(tree: Tree) -> None:
    """The local clock is shifted for the doctor process only, by libfaketime (LD_PRELOAD): a
    fake of this machine's clock; the KDC's time comes from its real KRB-ERROR."""
    lib = next(Path("/usr/lib/x86_64-linux-gnu/faketime").glob("libfaketime.so.1"), None)
    if lib is None:
        pytest.skip("libfaketime (package faketime) is not installed")
    lab = tree.rig.lab
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KRB5_CONFIG": str(lab.krb5_conf),
           "PYTHONPATH": str(REPO), "LD_PRELOAD": str(lib), "FAKETIME": "-10m",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}  # fmt: skip
    res = subprocess.run(
        ["ip", "netns", "exec", lab.ns, "env", "-i", *(f"{k}={v}" for k, v in env.items()),
         sys.executable, "-m", "upcall", "doctor", "--root", str(tree.root)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    out = res.stdout.splitlines()
    assert res.returncode == 1, res.stdout + res.stderr
    line = next(ln for ln in out if ln.startswith("FAIL clock"))
    assert "behind the KDC" in line and "fix: synchronise time" in line
    secs = int(line.split("this clock is ")[1].split(" s")[0])
    assert 590 <= secs <= 610, line
    print(line)


def test_explain_without_a_process(tree: Tree) -> None:
    lab = tree.rig.lab
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KRB5_CONFIG": str(lab.krb5_conf),
           "PYTHONPATH": str(REPO)}  # fmt: skip
    res = subprocess.run(
        ["ip", "netns", "exec", lab.ns, "env", "-i", *(f"{k}={v}" for k, v in env.items()),
         sys.executable, "-m", "upcall", "explain", "--root", str(tree.root), "--user", "dave",
         "--server", lab.fqdn], capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    print(res.stdout)
    assert "uid 23004, no process" in res.stdout
    assert "policy" in res.stdout and "request-key" in res.stdout
    assert os.path.exists(HELPER)
