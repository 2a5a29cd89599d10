"""Whose credentials: another user's cache reached through namespaces, permissions or names
(issue #8, cases 3, 12, 13, and extra cases: KEYRING:persistent: of another uid, a DIR:
collection whose ticket file is a symlink to a root-only cache, a huge environment).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from tests.components.samba import SambaLab
from tests.lab.hostile import _attacks as A

pytestmark = pytest.mark.lab


def _bob_cache(lab: SambaLab, path: Path, mode: int = 0o600) -> bytes:
    lab.kinit(lab.users["bob"], f"FILE:{path}")  # as bob: owned by bob
    path.chmod(mode)
    assert path.stat().st_uid == lab.users["bob"].uid
    return path.read_bytes()


def test_multi_user_namespace_does_not_give_alice_bobs_cache(
    samba_lab: SambaLab, tmp_world: Path
) -> None:
    """ATTACK: root made a user namespace mapping several host uids (alice 23001 and bob
    23002); alice's process inside it names bob's 0600 FILE cache. A helper child that entered
    that user namespace and changed to alice there keeps its capabilities (uid 0 is not mapped
    there, so the kernel's "leaving root" rule never fires) and CAP_DAC_OVERRIDE reads bob's
    file. Secure: principal is never bob; the outcome is a failure with no token."""
    lab = samba_lab
    alice, bob = lab.users["alice"], lab.users["bob"]
    cc = tmp_world / "cc.bob-0600"
    _bob_cache(lab, cc)
    flag = tmp_world / f"mapped-{secrets.token_hex(3)}"
    # unshare(CLONE_NEWUSER) as root, wait for root to write the maps, then become alice with
    # no exec in between (so the ids can still be changed in the new namespace), then sleep.
    code = (
        "import ctypes, os, sys, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.unshare(0x10000000) == 0, ctypes.get_errno()\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.02)\n"
        "os.setgroups([]); os.setresgid(100, 100, 100)\n"
        f"os.setresuid({alice.uid}, {alice.uid}, {alice.uid})\n"
        "os.execvp('sleep', ['sleep', '600'])\n"
    )
    proc = lab.popen(["python3", "-c", code, str(flag)], env=lab.env(KRB5CCNAME=f"FILE:{cc}"))
    try:
        own = os.stat("/proc/self/ns/user").st_ino
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(f"/proc/{proc.pid}/ns/user").st_ino != own:
                    break
            assert time.monotonic() < deadline, "caller never entered its user namespace"
            time.sleep(0.02)
        # root writes the maps: alice and bob (23001-23002) and group users (100); uid 0 is
        # not mapped in there
        Path(f"/proc/{proc.pid}/uid_map").write_text(f"{alice.uid} {alice.uid} 2\n")
        Path(f"/proc/{proc.pid}/gid_map").write_text("100 100 1\n")
        flag.touch()
        A._wait_comm(proc.pid, "sleep", 10)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{alice.uid}\s", status, re.M), status
        r = A.dry_run(lab, A.description(lab, alice.uid, proc.pid), tmp_world)
    finally:
        proc.kill()
        proc.wait()
    doc = A.assert_clean_end(r)
    assert doc["principal"] != bob.principal, f"alice got bob's ticket:\n{r.text()}"
    assert doc["outcome"] == "failed" and r.doc and r.doc["payload_len"] is None, r.text()


def test_readable_cache_of_another_uid_is_refused(samba_lab: SambaLab, tmp_world: Path) -> None:
    """ATTACK: bob's FILE cache is 0644 (a careless umask); alice names it in KRB5CCNAME.
    She can read it as herself, so opening it only as the user does not stop her. Secure:
    refused, and the trail says the cache is not owned by the user."""
    lab = samba_lab
    alice = lab.users["alice"]
    cc = tmp_world / "cc.bob-0644"
    _bob_cache(lab, cc, 0o644)
    with A.hostile_caller(lab, "alice", lab.env(KRB5CCNAME=f"FILE:{cc}"), ["sleep", "600"]) as c:
        r = A.dry_run(lab, A.description(lab, alice.uid, c.pid), tmp_world)
    doc = A.assert_clean_end(r)
    assert doc["principal"] != "bob@LAB.TEST", f"alice used bob's cache:\n{r.text()}"
    assert doc["outcome"] == "failed", r.text()
    note = rf"not owned by|owned by uid {lab.users['bob'].uid}, not"
    assert re.search(note, r.trail_text()), f"no ownership note:\n{r.text()}"


def test_uid0_failure_without_policy_is_no_credentials(
    samba_lab: SambaLab, tmp_world: Path
) -> None:
    """creduid=0 with no policy file and no cache: the reason is no-credentials (what is
    missing), not policy-denied (root is never impersonated, but no policy asked for it)."""
    if Path("/etc/cifs-upcall/policy.yaml").exists():
        pytest.skip("HOSTILE CASE 13 NOT RUN: /etc/cifs-upcall/policy.yaml exists on this host")
    conf = tmp_world / "krb5-root-none.conf"
    conf.write_text(samba_lab.krb5_conf_text(default_ccache_name=f"FILE:{tmp_world}/none_%{{uid}}"))
    with A.hostile_caller(samba_lab, None, samba_lab.env(), ["sleep", "600"]) as c:
        r = A.dry_run(samba_lab, A.description(samba_lab, 0, c.pid), tmp_world,
                      krb5conf=str(conf))  # fmt: skip
    doc = A.assert_clean_end(r)
    assert (doc["outcome"], doc["reason"]) == ("failed", "no-credentials"), r.text()


def test_keyring_persistent_of_another_uid(samba_lab: SambaLab, tmp_world: Path) -> None:
    """ATTACK (extra): KRB5CCNAME=KEYRING:persistent:<bob's uid> in alice's environment, with
    bob holding a ticket there. The persistent keyring of another uid needs CAP_SETUID in the
    keyring's namespace. Secure: never bob's principal."""
    lab = samba_lab
    alice, bob = lab.users["alice"], lab.users["bob"]
    kr = f"KEYRING:persistent:{bob.uid}"
    lab.kinit(bob, kr)
    try:
        with A.hostile_caller(lab, "alice", lab.env(KRB5CCNAME=kr), ["sleep", "600"]) as c:
            r = A.dry_run(lab, A.description(lab, alice.uid, c.pid), tmp_world)
    finally:
        lab.run(["kdestroy", "-A"], user=bob.name, env=lab.env(KRB5CCNAME=kr), check=False)
    doc = A.assert_clean_end(r)
    assert doc["principal"] != bob.principal and doc["outcome"] == "failed", r.text()


def test_dir_collection_with_symlink_to_root_only_cache(
    samba_lab: SambaLab, tmp_world: Path
) -> None:
    """ATTACK (extra): alice's DIR: collection whose `primary` names a ticket file that is a
    symlink to a root-only (0600) cache holding bob's TGT. Secure: never bob's principal."""
    lab = samba_lab
    alice = lab.users["alice"]
    root_cc = tmp_world / "root-only-bob.cc"
    lab.kinit(lab.users["bob"], f"FILE:{root_cc}", as_user=False)
    root_cc.chmod(0o600)
    d = tmp_world / "alice-dir"
    d.mkdir(mode=0o700)
    (d / "primary").write_text("tkt\n")
    (d / "tkt").symlink_to(root_cc)
    subprocess.run(["chown", "-h", "-R", "alice:", str(d)], check=True)
    with A.hostile_caller(lab, "alice", lab.env(KRB5CCNAME=f"DIR:{d}"), ["sleep", "600"]) as c:
        r = A.dry_run(lab, A.description(lab, alice.uid, c.pid), tmp_world)
    doc = A.assert_clean_end(r)
    assert doc["principal"] != "bob@LAB.TEST" and doc["outcome"] == "failed", r.text()


def test_huge_environment(samba_lab: SambaLab, tmp_world: Path) -> None:
    """ATTACK (extra): 400 KB of environment before KRB5CCNAME (cifs.upcall once had a
    use-after-free on its buffer-doubling path). Secure: bounded read, a note, one outcome."""
    lab = samba_lab
    alice = lab.users["alice"]
    big = {f"JUNK{i}": "x" * 100_000 for i in range(4)}
    env = lab.env(**big, KRB5CCNAME=f"FILE:{tmp_world}/nothing")
    with A.hostile_caller(lab, "alice", env, ["sleep", "600"]) as c:
        assert len(Path(f"/proc/{c.pid}/environ").read_bytes()) > 400_000
        r = A.dry_run(lab, A.description(lab, alice.uid, c.pid), tmp_world)
    doc = A.assert_clean_end(r)
    assert doc["outcome"] == "failed", r.text()
    assert r.peak_rss_kb < 200_000, r.text()
