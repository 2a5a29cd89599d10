"""What pid= names (issue #8, case 7, and extra: a thread in another mount namespace than its
leader, a zombie, a kernel thread)."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from tests.components.samba import SambaLab
from tests.lab.hostile import _attacks as A

pytestmark = pytest.mark.lab


def _tid(tidfile: Path, leader: int) -> int:
    deadline = time.monotonic() + 10
    while not tidfile.exists() or not tidfile.read_text().strip():
        assert time.monotonic() < deadline, "thread never wrote its tid"
        time.sleep(0.05)
    tid = int(tidfile.read_text())
    assert tid != leader and Path(f"/proc/{leader}/task/{tid}").exists()
    return tid


def test_pid_is_a_non_leader_thread(
    samba_lab: SambaLab, tmp_world: Path, sleeper_bin: Path
) -> None:
    """The kernel's pid= is current->pid: a thread id when a worker thread touched the mount.
    Secure: the thread group's process is used, a normal outcome (alice's ticket), no
    traceback."""
    lab = samba_lab
    alice = lab.users["alice"]
    cc = f"FILE:{tmp_world}/cc.alice-thread"
    lab.kinit(alice, cc)
    tidfile = tmp_world / f"tid-{secrets.token_hex(3)}"
    argv = [str(sleeper_bin), "thread", str(tidfile)]
    with A.hostile_caller(lab, "alice", lab.env(KRB5CCNAME=cc), argv, leaf="sleeper") as c:
        tid = _tid(tidfile, c.pid)
        r = A.dry_run(lab, A.description(lab, alice.uid, tid), tmp_world,
                      krb5conf=str(lab.krb5_conf))  # fmt: skip
    doc = A.assert_clean_end(r)
    assert (doc["outcome"], doc["principal"]) == ("ok", alice.principal), r.text()


def test_thread_in_another_mount_namespace_than_its_leader(
    samba_lab: SambaLab, tmp_world: Path, sleeper_bin: Path
) -> None:
    """ATTACK (extra): a thread did unshare(CLONE_FS|CLONE_NEWNS) and mounted a tmpfs over the
    directory of the cache its leader's environment names. pid= is that thread. Secure: one
    consistent view (the pinned thread group), a clean outcome, never a traceback; if a ticket
    is used it is alice's."""
    lab = samba_lab
    alice = lab.users["alice"]
    ccdir = A.world_dir(tmp_world, "thread-ns-cc", 0o755)
    A.chown(ccdir, "alice")
    cc = f"FILE:{ccdir}/cc"
    lab.kinit(alice, cc)
    tidfile = tmp_world / f"tid-{secrets.token_hex(3)}"
    argv = ["unshare", "--user", "--map-root-user", str(sleeper_bin), "thread-ns", str(tidfile),
            str(ccdir)]  # fmt: skip
    with A.hostile_caller(lab, "alice", lab.env(KRB5CCNAME=cc), argv, leaf="sleeper") as c:
        tid = _tid(tidfile, c.pid)
        assert os.stat(f"/proc/{tid}/ns/mnt").st_ino != os.stat(f"/proc/{c.pid}/ns/mnt").st_ino
        r = A.dry_run(lab, A.description(lab, alice.uid, tid), tmp_world,
                      krb5conf=str(lab.krb5_conf))  # fmt: skip
    doc = A.assert_clean_end(r)
    assert doc["principal"] in (None, alice.principal), r.text()


def test_pid_1(samba_lab: SambaLab, tmp_world: Path) -> None:
    """pid=1 (init) for alice's uid in a dry run: no traceback, a reason."""
    r = A.dry_run(samba_lab, A.description(samba_lab, samba_lab.users["alice"].uid, 1), tmp_world,
                  krb5conf=str(samba_lab.krb5_conf))  # fmt: skip
    doc = A.assert_clean_end(r)
    assert doc["outcome"] == "failed" and doc["reason"], r.text()


def test_pid_of_a_kernel_thread(samba_lab: SambaLab, tmp_world: Path) -> None:
    """pid=2 (kthreadd: no mm, no environ, namespaces of init): no traceback, a reason."""
    r = A.dry_run(samba_lab, A.description(samba_lab, samba_lab.users["alice"].uid, 2), tmp_world,
                  krb5conf=str(samba_lab.krb5_conf))  # fmt: skip
    doc = A.assert_clean_end(r)
    assert doc["outcome"] == "failed" and doc["reason"], r.text()


def test_pid_of_a_zombie_with_no_namespaces(samba_lab: SambaLab, tmp_world: Path) -> None:
    """pid= of a zombie: /proc/PID/status exists, /proc/PID/ns/* and environ do not answer
    (the error path of unreadable namespaces). Secure: no traceback, a reason."""
    parent = subprocess.Popen(
        ["setpriv", "--reuid=23001", "--regid=100", "--clear-groups", "sh", "-c",
         "sleep 0 & exec sleep 600"],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        zombie = None
        while zombie is None and time.monotonic() < deadline:
            for t in Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split():
                if Path(f"/proc/{t}/stat").read_text().split()[2] == "Z":
                    zombie = int(t)
            time.sleep(0.05)
        assert zombie is not None, "no zombie child appeared"
        ns_err = ""
        try:
            os.stat(f"/proc/{zombie}/ns/mnt")
        except OSError as e:
            ns_err = e.strerror or ""
        print(f"zombie {zombie}: /proc/PID/ns/mnt -> {ns_err or 'readable'}")
        r = A.dry_run(samba_lab, A.description(samba_lab, 23001, zombie), tmp_world,
                      krb5conf=str(samba_lab.krb5_conf))  # fmt: skip
    finally:
        parent.kill()
        parent.wait()
    doc = A.assert_clean_end(r)
    assert doc["outcome"] == "failed" and doc["reason"], r.text()
