"""One structured journald entry per upcall, read back with journalctl, from a real journald.

The host runs no journald, so one is started here (the distribution's systemd-journald, not a
stand-in) in a private mount namespace: tmpfs on /run and /var/log/journal, this project's
catalog bind-mounted on /usr/lib/systemd/catalog, so the host's logs are untouched. The helper
(this worktree's code) runs in that mount namespace; everything else is the lab's: the caller
is erin's process (NOT_DELEGATED in AD), gssproxy impersonates, the KDC refuses S4U2Proxy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proxy_fixtures import Rig
from tests.upcall_driver import caller, description

REPO = Path(__file__).resolve().parents[2]
JOURNALD = "/lib/systemd/systemd-journald"
pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(not os.path.exists(JOURNALD), reason="systemd-journald not installed"),
]


class Journal:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def run(
        self, *argv: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`argv` in journald's mount namespace (host's other namespaces)."""
        return subprocess.run(["nsenter", "-t", str(self.pid), "-m", "--", *argv],
                              capture_output=True, text=True, timeout=60, env=env)  # fmt: skip

    def query(self, *match: str) -> list[dict[str, str]]:
        for _ in range(50):
            res = self.run("journalctl", "--no-pager", "-o", "json", *match)
            entries = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
            if entries:
                return entries
            time.sleep(0.1)
        return []


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    cat = tmp_path_factory.mktemp("catalog")
    shutil.copy(REPO / "upcall/cifs-upcall.catalog", cat / "cifs-upcall.catalog")
    script = " && ".join([
        "mount -t tmpfs -o mode=755 cup-jd-run /run", "mkdir -p /run/systemd/journal",
        "mount -t tmpfs cup-jd-log /var/log/journal",
        "mount -t tmpfs cup-jd-catdb /var/lib/systemd/catalog",
        f"mount --bind {cat} /usr/lib/systemd/catalog",
        f"exec {JOURNALD}",
    ])  # fmt: skip
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        sock = Path(f"/proc/{proc.pid}/root/run/systemd/journal/socket")
        for _ in range(100):
            if sock.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert sock.exists(), proc.stderr.read() if proc.stderr else ""
        j = Journal(proc.pid)
        assert j.run("journalctl", "--update-catalog").returncode == 0
        yield j
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_refused_upcall_is_one_structured_entry(
    journal: Journal, pt_rig: Rig, tmp_path: Path
) -> None:
    lab = pt_rig.lab
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(REPO),
           "KRB5_CONFIG": str(lab.krb5_conf)}  # fmt: skip
    with caller(lab, "erin", lab.env(KRB5CCNAME=f"FILE:{tmp_path}/none")) as pid:
        desc = description(lab, lab.users["erin"].uid, pid)
        res = journal.run(sys.executable, "-m", "upcall", "-k", str(lab.krb5_conf),
                          "--host-krb5-config", str(lab.krb5_conf), "--policy",
                          str(pt_rig.policy), "--dry-run", desc, "--json", env=env)  # fmt: skip
    doc = json.loads(res.stdout)
    assert doc["reason"] == "s4u2proxy-refused", doc
    entries = journal.query("CIFS_UPCALL_REASON=s4u2proxy-refused", f"CIFS_UPCALL_CALLER_PID={pid}")
    assert len(entries) == 1, entries
    e = entries[0]
    print(json.dumps({k: v for k, v in e.items() if k.startswith(("CIFS_", "MESSAGE", "_TRANS"))},
                     indent=1))  # fmt: skip
    assert e["_TRANSPORT"] == "journal"  # the native protocol, not syslog
    assert e["SYSLOG_IDENTIFIER"] == "cifs-upcall" and e["PRIORITY"] == "3"
    assert e["CIFS_UPCALL_OUTCOME"] == "failed"
    assert e["CIFS_UPCALL_UID"] == str(lab.users["erin"].uid)
    assert e["CIFS_UPCALL_SERVER"] == lab.fqdn
    assert e["MESSAGE_ID"] == "d4f6a8c0e2b44d6f8a0c2e4b6d8f0a17"
    assert e["MESSAGE"].startswith("outcome=failed reason=s4u2proxy-refused")
    assert int(e["CIFS_UPCALL_MS"]) >= 0 and "S4U2Proxy" in e["CIFS_UPCALL_HINT"]
    # journalctl -x: the catalog's text, filled in from the entry's fields
    x = journal.run("journalctl", "--no-pager", "-x", "CIFS_UPCALL_REASON=s4u2proxy-refused",
                    f"CIFS_UPCALL_CALLER_PID={pid}").stdout  # fmt: skip
    print(x)
    assert f"the KDC refused impersonation of uid {lab.users['erin'].uid} at {lab.fqdn}" in x
    assert "Protected Users" in x and "@CIFS_UPCALL" not in x
    assert "\\x00" in e["CIFS_UPCALL_ERROR"]  # GSS's NUL escaped as in the line: a text field
    # one entry per upcall: no syslog copy beside it
    same = journal.query("SYSLOG_IDENTIFIER=cifs-upcall", f"CIFS_UPCALL_CALLER_PID={pid}")
    assert len(same) == 1
