"""The helper against the real Samba AD DC: every credential path, judged by the SMB server.

Each test starts a real caller process in the lab's namespaces whose KRB5CCNAME (if any) exists
only in that process's environment, runs `cifs-upcall --dry-run` as root from the host with the
description the kernel would send, and hands the payload to the lab's SMB server (signed tree
connect and read with our session key, as cifs.ko uses it).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from spnego._spnego import unpack_token

from tests.components.samba import SambaLab
from tests.components.smb_client import DIALECTS, smb_session
from tests.upcall_driver import caller, description, dry_run, own_ticket_upcall

pytestmark = pytest.mark.lab


def _alice(lab: SambaLab) -> tuple[str, int]:
    u = lab.users["alice"]
    return u.name, u.uid


def _own_dir(path: Path, user: str) -> Path:
    path.mkdir(mode=0o700)
    subprocess.run(["chown", f"{user}:", str(path)], check=True)
    return path


def test_file_ccache_from_caller_environment_all_dialects_and_aes256(
    samba_lab: SambaLab, tmp_world: Path
) -> None:
    name = "alice"
    cc = f"FILE:{tmp_world}/cc.alice"
    r = own_ticket_upcall(samba_lab, name, tmp_world, cc)
    assert r.ok, r.doc
    assert (r.doc["source"], r.doc["principal"], r.doc["spn"]) == (
        "ccache", "alice@LAB.TEST", "cifs/dc1.lab.test",
    )  # fmt: skip
    assert f"{cc} (environ)" in r.trail_text()
    assert "entered net,mnt" in r.trail_text()
    assert r.msg is not None and r.msg.version == 2 and len(r.msg.session_key) == 32
    for dialect in DIALECTS:
        s = smb_session(samba_lab, r.msg.blob, r.msg.session_key, dialect=dialect)
        assert s.tree_connect_signed and s.server_user == "alice", dialect
        assert s.content == b"hello from lab share\n"
    for cipher in ("AES-256-GCM", "AES-256-CCM"):
        s = smb_session(samba_lab, r.msg.blob, r.msg.session_key, dialect="3.1.1",
                        share="secure", ciphers=[cipher], encrypt=True)  # fmt: skip
        assert s.cipher == cipher and s.encryption_key_bits == 256
        assert s.content == b"hello from lab share\n"


def test_written_file_is_owned_by_the_user_server_side(
    samba_lab: SambaLab, tmp_world: Path
) -> None:
    name = "alice"
    cc = f"FILE:{tmp_world}/cc.owner"
    r = own_ticket_upcall(samba_lab, name, tmp_world, cc)
    assert r.msg is not None
    fname = f"owner-{os.getpid()}-{time.monotonic_ns()}.txt"
    s = smb_session(samba_lab, r.msg.blob, r.msg.session_key, write_path=fname)
    assert s.written_owner == "alice"


def test_dir_collection_ccache(samba_lab: SambaLab, tmp_world: Path) -> None:
    name = "alice"
    d = _own_dir(tmp_world / "ccdir", name)
    cc = f"DIR:{d}"
    r = own_ticket_upcall(samba_lab, name, tmp_world, cc)
    assert r.ok and r.doc["principal"] == "alice@LAB.TEST", r.doc
    assert r.msg is not None
    assert smb_session(samba_lab, r.msg.blob, r.msg.session_key).server_user == "alice"


def test_keyring_persistent_ccache(samba_lab: SambaLab, tmp_world: Path) -> None:
    bob = samba_lab.users["bob"]
    cc = f"KEYRING:persistent:{bob.uid}"
    samba_lab.kinit(bob, cc)
    try:
        with caller(samba_lab, bob.name, samba_lab.env(KRB5CCNAME=cc)) as pid:
            r = dry_run(samba_lab, description(samba_lab, bob.uid, pid), tmp_world)
        assert r.ok and r.doc["principal"] == "bob@LAB.TEST", r.doc
        assert r.msg is not None
        assert smb_session(samba_lab, r.msg.blob, r.msg.session_key).server_user == "bob"
    finally:
        samba_lab.run(["kdestroy", "-A"], user=bob.name, env=samba_lab.env(KRB5CCNAME=cc),
                      check=False)  # fmt: skip


def test_default_ccache_from_krb5_conf_when_caller_has_no_krb5ccname(
    samba_lab: SambaLab, tmp_world: Path
) -> None:
    name, uid = _alice(samba_lab)
    conf = tmp_world / "krb5-default.conf"
    conf.write_text(samba_lab.krb5_conf_text(default_ccache_name=f"FILE:{tmp_world}/dflt_%{{uid}}"))
    samba_lab.kinit(samba_lab.users[name], f"FILE:{tmp_world}/dflt_{uid}")
    with caller(samba_lab, name, samba_lab.env(KRB5_CONFIG=str(conf))) as pid:
        r = dry_run(samba_lab, description(samba_lab, uid, pid), tmp_world, krb5conf=conf)
    assert r.ok, r.doc
    assert f"FILE:{tmp_world}/dflt_{uid} (default; caller has no KRB5CCNAME)" in r.trail_text()


def test_expired_tgt_is_reported_as_expired(samba_lab: SambaLab, tmp_world: Path) -> None:
    carol = samba_lab.users["carol"]
    cc = f"FILE:{tmp_world}/cc.carol"
    samba_lab.kinit(carol, cc, lifetime="4s")
    time.sleep(5)
    with caller(samba_lab, carol.name, samba_lab.env(KRB5CCNAME=cc)) as pid:
        r = dry_run(samba_lab, description(samba_lab, carol.uid, pid), tmp_world)
    assert not r.ok and r.doc["reason"] == "expired-credentials", r.doc
    assert "TGT in" in r.trail_text() and "has expired" in r.trail_text()
    assert "kinit" in r.doc["hint"]
    assert r.msg is None


def test_service_ticket_only_ccache_needs_no_kdc(samba_lab: SambaLab, tmp_world: Path) -> None:
    """A cache holding only cifs/dc1 (no TGT) serves, and the KDC sees no request for it."""
    name, uid = _alice(samba_lab)
    # Its own computer account, so other tests' delegation settings on CLIENT1$ stay untouched.
    kt = samba_lab.base / "svcst.keytab"
    if not kt.exists():
        kt = samba_lab.add_computer("svcst")
        samba_lab.samba_tool("delegation", "for-any-protocol", "SVCST$", "on")
        samba_lab.samba_tool("delegation", "add-service", "SVCST$", f"cifs/{samba_lab.fqdn}")
    tgt = f"FILE:{tmp_world}/cc.svcst"
    only = tmp_world / "cc.alice.st-only"
    env = samba_lab.env(KRB5CCNAME=tgt)
    samba_lab.run(["kinit", "-k", "-t", str(kt), f"SVCST$@{samba_lab.realm}"], env=env)
    samba_lab.run(["kvno", "-U", name, "-P", f"cifs/{samba_lab.fqdn}", "--out-cache",
                   f"FILE:{only}"], env=env)  # fmt: skip
    subprocess.run(["chown", f"{name}:", str(only)], check=True)
    klist = samba_lab.run(["klist", "-c", f"FILE:{only}"]).stdout
    assert "krbtgt/" not in klist and f"cifs/{samba_lab.fqdn}" in klist
    with caller(samba_lab, name, samba_lab.env(KRB5CCNAME=f"FILE:{only}")) as pid:
        offset = samba_lab.kdc_log_offset()
        r = dry_run(samba_lab, description(samba_lab, uid, pid), tmp_world)
        kdc = samba_lab.kdc_log_since(offset)
    detail = samba_lab.run(["klist", "-e", "-f", "-c", f"FILE:{only}"], check=False).stdout
    assert r.ok and r.doc["principal"] == "alice@LAB.TEST", (r.doc, detail)
    assert "TGS-REQ" not in kdc and "AS-REQ" not in kdc
    assert r.msg is not None
    assert smb_session(samba_lab, r.msg.blob, r.msg.session_key).server_user == "alice"


def test_user_mount_uses_the_keytab(samba_lab: SambaLab, tmp_world: Path) -> None:
    """A root mount with user=CLIENT1$ and no ccache: AS exchange from the keytab."""
    conf = tmp_world / "krb5-root.conf"  # root's default cache must not exist
    conf.write_text(samba_lab.krb5_conf_text(default_ccache_name=f"FILE:{tmp_world}/none_%{{uid}}"))
    kt = samba_lab.base / "client1.keytab"
    with caller(samba_lab, None, samba_lab.env()) as pid:
        desc = description(samba_lab, 0, pid, user="CLIENT1$")
        r = dry_run(samba_lab, desc, tmp_world, "-K", str(kt), krb5conf=conf)
    assert r.ok, r.doc
    assert (r.doc["source"], r.doc["principal"]) == ("keytab", "CLIENT1$@LAB.TEST")
    assert "uid 0: environment not probed" in r.trail_text()
    assert r.msg is not None
    server_user = smb_session(samba_lab, r.msg.blob, r.msg.session_key).server_user
    assert (server_user or "").upper() == "CLIENT1$"


def test_mskrb5_offers_the_microsoft_oid(samba_lab: SambaLab, tmp_world: Path) -> None:
    name = "alice"
    cc = f"FILE:{tmp_world}/cc.ms"
    r = own_ticket_upcall(samba_lab, name, tmp_world, cc, sec="mskrb5")
    assert r.ok and r.msg is not None
    assert unpack_token(r.msg.blob).mech_types == ["1.2.840.48018.1.2.2"]
    assert smb_session(samba_lab, r.msg.blob, r.msg.session_key).server_user == "alice"


def test_caller_in_its_own_user_and_mount_namespace(samba_lab: SambaLab, tmp_world: Path) -> None:
    """The ccache exists only inside the caller's mount namespace; the host path holds a decoy."""
    name, uid = _alice(samba_lab)
    hidden = _own_dir(tmp_world / "private", name)
    bob = samba_lab.users["bob"]
    decoy = hidden / "cc"
    samba_lab.kinit(bob, f"FILE:{decoy}", as_user=False)  # on the host: bob's ticket
    subprocess.run(["chown", f"{name}:", str(decoy)], check=True)
    script = (
        f"mount -t tmpfs -o mode=700 none {hidden} && "
        f"printf '%s\\n' \"$PW\" | kinit {name}@{samba_lab.realm} >/dev/null && exec sleep 600"
    )
    env = samba_lab.env(KRB5CCNAME=f"FILE:{decoy}", PW=samba_lab.users[name].password)
    argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script]
    with caller(samba_lab, name, env, argv, leaf="sleep") as pid:
        r = dry_run(samba_lab, description(samba_lab, uid, pid), tmp_world)
        assert (
            Path(f"/proc/{pid}/ns/user").stat().st_ino != Path("/proc/self/ns/user").stat().st_ino
        )
    assert r.ok, r.doc
    assert r.doc["principal"] == "alice@LAB.TEST"  # never bob's host-side decoy
    assert "entered net,mnt,user" in r.trail_text()
    assert r.msg is not None
    assert smb_session(samba_lab, r.msg.blob, r.msg.session_key).server_user == "alice"


def test_upcall_target_mount_ignores_the_callers_environment(
    samba_lab: SambaLab, tmp_world: Path
) -> None:
    name, uid = _alice(samba_lab)
    conf = tmp_world / "krb5-mount.conf"
    conf.write_text(samba_lab.krb5_conf_text(default_ccache_name=f"FILE:{tmp_world}/mnt_%{{uid}}"))
    samba_lab.kinit(samba_lab.users[name], f"FILE:{tmp_world}/mnt_{uid}")
    env_cc = f"FILE:{tmp_world}/cc.from-env"  # bob's ticket in the caller's env: must be unused
    samba_lab.kinit(samba_lab.users["bob"], env_cc, as_user=False)
    with caller(samba_lab, name, samba_lab.env(KRB5CCNAME=env_cc)) as pid:
        desc = description(samba_lab, uid, pid, target="mount")
        r = dry_run(samba_lab, desc, tmp_world, krb5conf=conf, in_lab_ns=True)
    assert r.ok and r.doc["principal"] == "alice@LAB.TEST", r.doc
    assert "upcall_target=mount" in r.trail_text() and "entered" not in r.trail_text()


def test_root_only_ccache_named_by_the_user_is_not_readable(
    samba_lab: SambaLab, tmp_world: Path
) -> None:
    """KRB5CCNAME pointing at root's cache: opened only as the user, so it fails."""
    name, uid = _alice(samba_lab)
    root_cc = tmp_world / "root-only.cc"
    samba_lab.kinit(samba_lab.users["bob"], f"FILE:{root_cc}", as_user=False)
    root_cc.chmod(0o600)
    with caller(samba_lab, name, samba_lab.env(KRB5CCNAME=f"FILE:{root_cc}")) as pid:
        r = dry_run(samba_lab, description(samba_lab, uid, pid), tmp_world)
    assert not r.ok and r.doc["reason"] == "no-credentials", r.doc
    assert r.msg is None


def test_caller_running_as_another_uid_is_not_probed(samba_lab: SambaLab, tmp_world: Path) -> None:
    bob = samba_lab.users["bob"]
    cc = f"FILE:{tmp_world}/cc.bob-env"
    samba_lab.kinit(bob, cc)
    _, alice_uid = _alice(samba_lab)
    with caller(samba_lab, bob.name, samba_lab.env(KRB5CCNAME=cc)) as pid:
        conf = tmp_world / "krb5-x.conf"
        conf.write_text(
            samba_lab.krb5_conf_text(default_ccache_name=f"FILE:{tmp_world}/x_%{{uid}}")
        )
        r = dry_run(samba_lab, description(samba_lab, alice_uid, pid), tmp_world, krb5conf=conf)
    assert not r.ok and r.doc["reason"] == "no-credentials"
    assert f"caller runs as uid {bob.uid}, not {alice_uid}" in r.trail_text()


def test_unknown_server_tries_both_spellings(samba_lab: SambaLab, tmp_world: Path) -> None:
    name = "alice"
    cc = f"FILE:{tmp_world}/cc.unknown"
    r = own_ticket_upcall(samba_lab, name, tmp_world, cc, host="nosuch.lab.test")
    assert not r.ok and r.doc["reason"] == "unknown-server-principal", r.doc
    text = r.trail_text()
    assert "cifs/nosuch.lab.test" in text and "CIFS/nosuch.lab.test" in text


def test_caller_that_is_gone(samba_lab: SambaLab, tmp_world: Path) -> None:
    p = subprocess.Popen(["true"])
    p.wait()
    r = dry_run(samba_lab, description(samba_lab, 23001, p.pid), tmp_world)
    assert not r.ok and r.doc["reason"] == "caller-gone"


def test_iakerb_is_refused_with_a_reason(samba_lab: SambaLab, tmp_world: Path) -> None:
    with caller(samba_lab, "alice", samba_lab.env()) as pid:
        r = dry_run(samba_lab, description(samba_lab, 23001, pid, sec="iakerb"), tmp_world)
    assert not r.ok and r.doc["reason"] == "unsupported-mech"
    assert "IAKerb" in r.doc["message"]


def test_deny_groups_member_is_never_sent_to_gssproxy(
    samba_lab: SambaLab, tmp_world: Path, tmp_path: Path
) -> None:
    """Group membership comes from the host's NSS (getgrouplist), as winbind/sssd would supply
    AD's Protected Users; the proxy step is dropped before any gssproxy connection."""
    group = "cuptest-protected"
    subprocess.run(["groupadd", "-f", group], check=True)
    subprocess.run(["usermod", "-aG", group, "alice"], check=True)
    try:
        policy = tmp_path / "policy.yaml"  # root-owned, in root-owned 0700 directories
        socket = tmp_path / "gp" / "cifs.sock"  # never created: it must not even be tried
        policy.write_text(
            f"version: 1\ndefaults: {{mode: local-first, socket: {socket}}}\n"
            f"deny_groups: [{group}]\n"
        )
        policy.chmod(0o644)
        with caller(samba_lab, "alice", samba_lab.env()) as pid:
            desc = description(samba_lab, samba_lab.users["alice"].uid, pid)
            r = dry_run(samba_lab, desc, tmp_world, "--policy", str(policy))
        assert not r.ok and r.doc["reason"] == "policy-denied", r.doc
        assert f"alice is a member of {group} (deny_groups)" in r.trail_text()
        assert "proxy-unavailable" not in r.trail_text()
    finally:
        subprocess.run(["gpasswd", "-d", "alice", group], capture_output=True)
        subprocess.run(["groupdel", group], capture_output=True)
