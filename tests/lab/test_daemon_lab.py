"""The warm path: the thin client handing requests to `cifs-upcall serve`, against the real
Samba DC, SMB server and kernel keyring.

The daemon is started on a private socket (a root-only directory under the test's tmp dir);
the client finds it through `--socket`, exactly as request-key's line would name it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.components.samba import SambaLab
from tests.components.smb_client import smb_session
from tests.proxy_fixtures import Rig, proxy_upcall
from tests.upcall_driver import HELPER, description, own_ticket_upcall, warm_daemon

pytestmark = pytest.mark.lab


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Path]:
    with warm_daemon(tmp_path) as sock:
        yield sock


def test_own_ticket_through_the_daemon_is_accepted_by_smbd(
    samba_lab: SambaLab, tmp_world: Path, daemon: Path
) -> None:
    cc = f"FILE:{tmp_world}/cc.alice.d"
    r = own_ticket_upcall(samba_lab, "alice", tmp_world, cc, "--socket", str(daemon))
    assert r.ok and r.doc["via"] == "daemon", r.doc
    assert (r.doc["source"], r.doc["principal"]) == ("ccache", "alice@LAB.TEST")
    assert "entered net,mnt" in r.trail_text()
    assert r.msg is not None and len(r.msg.session_key) == 32
    s = smb_session(samba_lab, r.msg.blob, r.msg.session_key)
    assert s.tree_connect_signed and s.server_user == "alice"


def test_without_a_daemon_the_client_works_in_process(
    samba_lab: SambaLab, tmp_world: Path, tmp_path: Path
) -> None:
    cc = f"FILE:{tmp_world}/cc.alice.n"
    nowhere = str(tmp_path / "nothing-here.sock")
    r = own_ticket_upcall(samba_lab, "alice", tmp_world, cc, "--socket", nowhere)
    assert r.ok and str(r.doc["via"]).startswith("in-process (no daemon at "), r.doc


def test_daemon_parses_the_arguments_and_reports_a_bad_flag(
    samba_lab: SambaLab, tmp_world: Path, daemon: Path
) -> None:
    log = tmp_world / "bad-flag.log"
    desc = description(samba_lab, samba_lab.users["alice"].uid, os.getpid())
    res = subprocess.run(
        [HELPER, "--socket", str(daemon), "--log-file", str(log), "--verbose", "--dry-run", desc],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert res.returncode == 2, res
    text = log.read_text()
    assert "outcome=refused" in text and "reason=bad-arguments" in text, text
    assert "unrecognized arguments: --verbose" in text


def test_daemon_serves_only_root_peers(daemon: Path) -> None:
    # Open the directory and socket to everyone for the test: the peer check must still hold.
    for d in daemon.parents:
        if d == Path("/tmp"):
            break
        d.chmod(d.stat().st_mode | 0o011)
    daemon.chmod(0o666)
    probe = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5)\n"
        "print(repr(s.recv(16)))\n"
    )
    res = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3",
         "-c", probe, str(daemon)], capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert res.stdout.strip() == "b''", res  # closed at once: no acknowledgement, no service
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(daemon))
    s.settimeout(5)
    assert s.recv(5)[:1] == b"K"  # root is acknowledged
    s.close()


def test_real_key_through_the_daemon_is_refused_and_negated_shortly(
    tmp_path: Path, daemon: Path
) -> None:
    # A `user` key with a cifs.spnego-shaped description, requested by root through the real
    # /sbin/request-key: the thin client describes it, the daemon refuses it (not cifs.spnego),
    # and the client negates it with the short timeout.
    log = tmp_path / "key.log"
    conf = Path("/etc/request-key.d/cifs-upcall-daemon-tests.conf")
    tag = uuid.uuid4().hex
    conf.write_text(f"create user dtest-{tag};* * {HELPER} --socket {daemon} --log-file {log} %k\n")
    try:
        desc = f"dtest-{tag};ver=0x2;host=h;sec=krb5;uid=0x0;creduid=0x0;pid=0x1"
        script = 'keyctl request2 user "$1" x @s'
        res = subprocess.run(["keyctl", "session", "-", "sh", "-c", script, "sh", desc],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    finally:
        conf.unlink()
    assert res.returncode != 0 and "Required key not available" in res.stderr, res
    text = log.read_text()
    assert "reason=foreign-key" in text and "via=daemon" in text, text
    row = next(ln for ln in Path("/proc/keys").read_text().splitlines() if tag in ln).split()
    assert "N" in row[1] and row[3] in ("1s", "2s", "3s", "4s", "5s"), row


_KDC_REQ = re.compile(r"^Kerberos: (AS|TGS)-REQ \S+ ipv4:", re.M)


def test_repeat_impersonation_through_the_daemon_makes_no_kdc_request(
    pt_rig: Rig, tmp_world: Path, daemon: Path
) -> None:
    # The daemon keeps what gssproxy handed the first worker (root-only memory); the second
    # upcall for the same user and server gives gssproxy that credential back: no S4U2Self,
    # no S4U2Proxy, no AS exchange, and smbd still accepts the token.
    lab = pt_rig.lab
    first_off = lab.kdc_log_offset()
    first = proxy_upcall(pt_rig, "bob", tmp_world, "--socket", str(daemon))
    first_kdc = lab.kdc_log_since(first_off)
    assert first.ok and first.doc["via"] == "daemon", first.doc
    assert (first.doc["source"], first.doc["impersonated"]) == ("proxy", True)
    assert _KDC_REQ.findall(first_kdc), first_kdc  # the first one does reach the KDC
    off = lab.kdc_log_offset()
    again = proxy_upcall(pt_rig, "bob", tmp_world, "--socket", str(daemon))
    kdc = lab.kdc_log_since(off)
    assert again.ok and again.doc["principal"] == f"bob@{lab.realm}", again.doc
    assert "cached credential: no S4U2Self" in again.trail_text(), again.trail_text()
    assert _KDC_REQ.findall(kdc) == [], kdc
    assert again.msg is not None
    s = smb_session(lab, again.msg.blob, again.msg.session_key)
    assert s.tree_connect_signed and s.server_user == "bob"
