"""Foreign native code in the helper's child: a krb5 plugin module the caller names in the
krb5.conf of her own mount namespace (issue #8, cases 2, 5 and 6).

Whatever the helper does, libkrb5 in the child reads the caller's krb5.conf, and [plugins]
`module = name:/path.so` makes it dlopen() that file: the module's constructor runs in the
helper's child. DESIGN.md rules 3 and 5: by then the child must hold no capability in any set
and have no_new_privs; and the parent must treat whatever the child writes as hostile.
"""

from __future__ import annotations

import json
import secrets
import shlex
from pathlib import Path

import pytest

from tests.components.samba import SambaLab
from tests.lab.hostile import _attacks as A
from tests.proxy_fixtures import Rig, proxy_upcall
from tests.upcall_driver import warm_daemon

pytestmark = pytest.mark.lab


def _conf(lab: SambaLab, work: Path, so: Path) -> Path:
    conf = work / f"evil-krb5-{secrets.token_hex(4)}.conf"
    conf.write_text(A.evil_krb5_conf(lab, so))
    conf.chmod(0o644)
    return conf


def _root_no_caps_argv(conf: Path) -> list[str]:
    """uid 0 in its own mount namespace with empty capability and bounding sets (a container
    without a user namespace); /etc/krb5.conf is the evil one in that namespace only."""
    script = (
        f"mount --bind {shlex.quote(str(conf))} /etc/krb5.conf && "
        "exec setpriv --bounding-set=-all --inh-caps=-all --ambient-caps=-all "
        "--no-new-privs sleep 600"
    )
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]


def _user_ns_argv(conf: Path, cc: str) -> list[str]:
    """alice in her own user+mount namespace, /etc/krb5.conf replaced there, her own TGT
    (kinit uses the lab's krb5.conf: the plugin must load in the helper, not in her kinit)."""
    script = (
        f"mount --bind {shlex.quote(str(conf))} /etc/krb5.conf && "
        f"printf '%s\\n' \"$PW\" | kinit alice >/dev/null && "
        "exec sleep 600"
    )
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script]


def _clear(rep_dir: Path) -> None:
    """Reports written while the caller set itself up are not the helper's."""
    for p in rep_dir.glob("report-*"):
        p.unlink()


def _check_plugin_reports(rep_dir: Path, r: A.HelperRun) -> list[dict[str, str]]:
    reps = A.reports(rep_dir)
    # Without a report the test proves nothing: the module must have been loaded.
    assert reps, f"the evil krb5 plugin was never loaded by the helper:\n{r.text()}"
    for rep in reps:
        print("plugin report:", rep)
        A.assert_sandboxed(rep)
    return reps


def test_root_caller_without_capabilities_plugin_gets_none(
    samba_lab: SambaLab, tmp_world: Path, cbin: Path, reports_dir: Path
) -> None:
    """ATTACK: a uid-0 caller with an empty bounding set (docker without userns) names a krb5
    plugin in its namespace's /etc/krb5.conf; the helper's child enters its mount namespace
    as full root and libkrb5 loads the module there, handing the 'container' back every
    capability. Secure: the module, if it runs at all, sees no capability and NoNewPrivs 1."""
    so = A.evil_plugin(cbin, reports_dir)
    conf = _conf(samba_lab, tmp_world, so)
    with A.hostile_caller(samba_lab, None, samba_lab.env(), _root_no_caps_argv(conf)) as c:
        status = Path(f"/proc/{c.pid}/status").read_text()
        assert "CapBnd:\t0000000000000000" in status, status  # the caller really has none
        # uid 0 and no user=: the default cache; a user= mount with a keytab: an AS exchange.
        desc = A.description(samba_lab, 0, c.pid, user="CLIENT1$")
        _clear(reports_dir)
        r = A.dry_run(samba_lab, desc, tmp_world, "-K", str(samba_lab.base / "client1.keytab"))
    A.assert_clean_end(r)
    _check_plugin_reports(reports_dir, r)


def test_user_in_own_userns_plugin_gets_no_capabilities(
    samba_lab: SambaLab, tmp_world: Path, cbin: Path, reports_dir: Path
) -> None:
    """ATTACK: alice in her own user+mount namespace names a krb5 plugin; the helper's child
    that setns()'d into her user namespace holds every capability there (and kuid 0 until it
    changes ids). Secure: the module sees no capability in any set and NoNewPrivs 1."""
    so = A.evil_plugin(cbin, reports_dir)
    conf = _conf(samba_lab, tmp_world, so)
    alice = samba_lab.users["alice"]
    cc = f"FILE:/tmp/cc-alice-{secrets.token_hex(4)}"
    env = samba_lab.env(KRB5CCNAME=cc, PW=alice.password)
    with A.hostile_caller(samba_lab, "alice", env, _user_ns_argv(conf, cc)) as c:
        _clear(reports_dir)
        r = A.dry_run(samba_lab, A.description(samba_lab, alice.uid, c.pid), tmp_world)
    A.assert_clean_end(r)
    _check_plugin_reports(reports_dir, r)


def test_prepared_worker_plugin_gets_no_capabilities_after_entering_a_user_namespace(
    samba_lab: SambaLab, tmp_world: Path, cbin: Path, reports_dir: Path, tmp_path: Path
) -> None:
    """ATTACK: as above (alice's own user+mount namespace, her krb5.conf naming a plugin), but
    through the warm daemon, whose local worker was prepared before the request: it emptied
    its bounding set and locked its securebits then, and entering her user namespace gives it
    a full bounding set and default securebits again. Secure: dropped anew after the switch,
    the module sees no capability in any set and NoNewPrivs 1."""
    so = A.evil_plugin(cbin, reports_dir)
    conf = _conf(samba_lab, tmp_world, so)
    alice = samba_lab.users["alice"]
    cc = f"FILE:/tmp/cc-alice-{secrets.token_hex(4)}"
    env = samba_lab.env(KRB5CCNAME=cc, PW=alice.password)
    with (
        warm_daemon(tmp_path) as sock,
        A.hostile_caller(samba_lab, "alice", env, _user_ns_argv(conf, cc)) as c,
    ):
        _clear(reports_dir)
        desc = A.description(samba_lab, alice.uid, c.pid)
        r = A.dry_run(samba_lab, desc, tmp_world, "--socket", str(sock))
    assert A.assert_clean_end(r)["via"] == "daemon", r.text()
    _check_plugin_reports(reports_dir, r)


def test_prepared_worker_plugin_gets_no_capabilities_from_a_root_container(
    samba_lab: SambaLab, tmp_world: Path, cbin: Path, reports_dir: Path, tmp_path: Path
) -> None:
    """ATTACK: the capability-less uid-0 container above, through the warm daemon: its local
    worker narrowed its bounding set before the request and enters only a mount namespace
    (no user namespace restores anything). Secure: the module sees no capability either."""
    so = A.evil_plugin(cbin, reports_dir)
    conf = _conf(samba_lab, tmp_world, so)
    with (
        warm_daemon(tmp_path) as sock,
        A.hostile_caller(samba_lab, None, samba_lab.env(), _root_no_caps_argv(conf)) as c,
    ):
        desc = A.description(samba_lab, 0, c.pid, user="CLIENT1$")
        _clear(reports_dir)
        keytab = str(samba_lab.base / "client1.keytab")
        r = A.dry_run(samba_lab, desc, tmp_world, "-K", keytab, "--socket", str(sock))
    assert A.assert_clean_end(r)["via"] == "daemon", r.text()
    _check_plugin_reports(reports_dir, r)


def test_flooding_child_is_bounded(
    samba_lab: SambaLab, tmp_world: Path, cbin: Path, reports_dir: Path
) -> None:
    """ATTACK: code in the child (the plugin in flood mode) writes 256 MiB into every pipe it
    holds, i.e. the result pipe the root parent reads into memory. Secure: the parent's peak
    RSS stays small, it ends with one log line and a failed outcome, within the deadline."""
    alice = samba_lab.users["alice"]
    # baseline: the same caller with a plugin that only records
    so = A.evil_plugin(cbin, reports_dir, "record")
    base_conf = _conf(samba_lab, tmp_world, so)
    cc = f"FILE:/tmp/cc-alice-{secrets.token_hex(4)}"
    env = samba_lab.env(KRB5CCNAME=cc, PW=alice.password)
    with A.hostile_caller(samba_lab, "alice", env, _user_ns_argv(base_conf, cc)) as c:
        _clear(reports_dir)
        base = A.dry_run(samba_lab, A.description(samba_lab, alice.uid, c.pid), tmp_world)
    flood_dir = A.world_dir(tmp_world, "flood-reports")
    so = A.evil_plugin(cbin, flood_dir, "flood")
    conf = _conf(samba_lab, tmp_world, so)
    with A.hostile_caller(samba_lab, "alice", env, _user_ns_argv(conf, cc)) as c:
        desc = A.description(samba_lab, alice.uid, c.pid)
        _clear(reports_dir)
        r = A.dry_run(samba_lab, desc, tmp_world, "--deadline", "8")
    assert A.reports(flood_dir), f"flood plugin never loaded:\n{r.text()}"
    print(f"baseline peak RSS {base.peak_rss_kb} kB; flooded {r.peak_rss_kb} kB")
    assert r.peak_rss_kb < max(base.peak_rss_kb, 60_000) + 32_000, (
        f"root parent grew to {r.peak_rss_kb} kB (baseline {base.peak_rss_kb} kB):\n{r.text()}"
    )
    assert r.seconds < 8 + 5, r.text()
    doc = A.assert_clean_end(r)
    assert doc["outcome"] == "failed", r.text()


def test_forged_result_from_child_is_rejected(
    samba_lab: SambaLab, tmp_world: Path, cbin: Path, reports_dir: Path
) -> None:
    """ATTACK: code in the local child writes a well-formed forged result into the result pipe
    (source proxy, impersonated true, principal bob@LAB.TEST, a random token and key) and
    _exit(0)s. Secure: a local attempt's result is never reported as proxy/impersonated or as
    someone else's principal; ideally it is rejected outright."""
    alice = samba_lab.users["alice"]
    so = A.evil_plugin(cbin, reports_dir, "forge")
    conf = _conf(samba_lab, tmp_world, so)
    cc = f"FILE:/tmp/cc-alice-{secrets.token_hex(4)}"
    env = samba_lab.env(KRB5CCNAME=cc, PW=alice.password)
    with A.hostile_caller(samba_lab, "alice", env, _user_ns_argv(conf, cc)) as c:
        _clear(reports_dir)
        r = A.dry_run(samba_lab, A.description(samba_lab, alice.uid, c.pid), tmp_world)
    assert A.reports(reports_dir), f"forge plugin never loaded:\n{r.text()}"
    doc = A.assert_clean_end(r)
    assert doc["source"] != "proxy" and doc["impersonated"] is not True, r.text()
    assert doc["principal"] != "bob@LAB.TEST", r.text()
    assert "principal=bob@LAB.TEST" not in r.log, r.text()
    assert doc["outcome"] == "failed", f"forged result accepted:\n{r.text()}"


FAKE_STATUS = (
    "Name:\\tpython3\\nUid:\\t0\\t0\\t0\\t0\\nGid:\\t0\\t0\\t0\\t0\\nCapInh:\\t0000000000000000\\n"
    "CapPrm:\\t0000000000000000\\nCapEff:\\t0000000000000000\\nCapBnd:\\t0000000000000000\\n"
    "CapAmb:\\t0000000000000000\\nNoNewPrivs:\\t1\\nSeccomp:\\t2\\n"
)


def test_fake_proc_in_callers_namespace_does_not_fool_the_drop_check(
    samba_lab: SambaLab, tmp_world: Path, cbin: Path, reports_dir: Path
) -> None:
    """ATTACK (extra): alice mounts a tmpfs over /proc in her mount namespace with a fake
    self/status claiming no capabilities and NoNewPrivs 1, so a check that re-reads
    /proc/self/status by path after entering her namespaces is fooled. The plugin reports the
    truth from capget(2)/prctl(2). Secure: every capability set really is empty."""
    so = A.evil_plugin(cbin, reports_dir)
    conf = _conf(samba_lab, tmp_world, so)
    alice = samba_lab.users["alice"]
    cc = f"FILE:/tmp/cc-alice-{secrets.token_hex(4)}"
    script = (
        f"mount --bind {shlex.quote(str(conf))} /etc/krb5.conf && "
        "printf '%s\\n' \"$PW\" | kinit alice >/dev/null && "
        "mount -t tmpfs none /proc && mkdir -p /proc/self /proc/thread-self && "
        f"printf '{FAKE_STATUS}' > /proc/self/status && "
        "cp /proc/self/status /proc/thread-self/status && exec sleep 600"
    )
    argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script]
    env = samba_lab.env(KRB5CCNAME=cc, PW=alice.password)
    with A.hostile_caller(samba_lab, "alice", env, argv) as c:
        _clear(reports_dir)
        r = A.dry_run(samba_lab, A.description(samba_lab, alice.uid, c.pid), tmp_world)
    A.assert_clean_end(r)
    _check_plugin_reports(reports_dir, r)


def test_worker_in_the_daemon_holds_no_channel_past_the_parent(
    samba_lab: SambaLab, tmp_world: Path, cbin: Path, reports_dir: Path, tmp_path: Path
) -> None:
    """ATTACK: through the warm daemon, code in the local worker (the plugin in fds mode) lists
    every fd it holds and writes a forged daemon reply (a forged JSON for stdout, exit 0) into
    every socket among them: the handler's connection to the client would take it past every
    check the parent makes. Secure: the worker holds no socket and nothing beyond its result
    pipe; the client prints exactly the real, daemon-made result."""
    alice = samba_lab.users["alice"]
    fd_dir = A.world_dir(tmp_world, "fds-reports")
    so = A.evil_plugin(cbin, fd_dir, "fds")
    conf = _conf(samba_lab, tmp_world, so)
    cc = f"FILE:/tmp/cc-alice-{secrets.token_hex(4)}"
    env = samba_lab.env(KRB5CCNAME=cc, PW=alice.password)
    with (
        warm_daemon(tmp_path) as sock,
        A.hostile_caller(samba_lab, "alice", env, _user_ns_argv(conf, cc)) as c,
    ):
        for p in fd_dir.glob("fds-*"):
            p.unlink()
        desc = A.description(samba_lab, alice.uid, c.pid)
        r = A.dry_run(samba_lab, desc, tmp_world, "--socket", str(sock))
    listings = [p.read_text() for p in fd_dir.glob("fds-*")]
    assert listings, f"fds plugin never loaded in the worker:\n{r.text()}"
    for text in listings:
        print("worker fds:", text.replace("\n", "; "))
        held = [ln.split(" ", 1)[1] for ln in text.splitlines() if ln.strip()]
        assert not [h for h in held if h.startswith("socket:")], held
        assert len([h for h in held if h.startswith("pipe:")]) <= 1, held  # its result pipe
    doc = A.assert_clean_end(r)
    assert r.stdout.count("{") == r.stdout.count("}") and len(r.stdout.splitlines()) == 1, r.stdout
    assert doc["via"] == "daemon" and doc["principal"] != "bob@LAB.TEST", r.text()


def test_worker_in_the_daemon_holds_no_other_users_cached_credential(
    pt_rig: Rig, tmp_world: Path, cbin: Path, reports_dir: Path, tmp_path: Path
) -> None:
    """ATTACK: bob's impersonated access goes through the warm daemon first (the daemon now
    keeps his gssproxy credential, keyed by his principal); then code in alice's local worker
    (the plugin in scan mode) reads all of its own memory, which a forked worker shares with
    whatever forked it, looking for bob's principal. Secure: the credential cache lives in a
    process nothing is forked from; her worker holds no trace of bob."""
    lab = pt_rig.lab
    alice = lab.users["alice"]
    bob_principal = f"bob@{lab.realm}"
    scan_dir = A.world_dir(tmp_world, "scan-reports")
    control = "needle-that-is-nowhere-else-" + secrets.token_hex(4)  # counts the plugin's
    # own copies of its needles (its string literal, its parsed list)
    so = A.evil_plugin(cbin, scan_dir, "scan", needles=[bob_principal, control])
    conf = _conf(lab, tmp_world, so)
    cc = f"FILE:/tmp/cc-alice-{secrets.token_hex(4)}"
    env = lab.env(KRB5CCNAME=cc, PW=alice.password)
    with warm_daemon(tmp_path) as sock:
        bob = proxy_upcall(pt_rig, "bob", tmp_world, "--socket", str(sock))
        assert bob.ok and bob.doc["via"] == "daemon" and bob.doc["principal"] == bob_principal
        again = proxy_upcall(pt_rig, "bob", tmp_world, "--socket", str(sock))
        assert "cached credential" in again.trail_text(), again.trail_text()  # it is kept
        with A.hostile_caller(lab, "alice", env, _user_ns_argv(conf, cc)) as c:
            for p in scan_dir.glob("scan-*"):
                p.unlink()
            desc = A.description(lab, alice.uid, c.pid)
            r = A.dry_run(lab, desc, tmp_world, "--socket", str(sock))
    scans = [dict(ln.split("=", 1) for ln in p.read_text().splitlines()) for p in
             scan_dir.glob("scan-*")]  # fmt: skip
    assert scans, f"scan plugin never loaded in the worker:\n{r.text()}"
    for found in scans:
        print("worker memory scan:", found)
        assert int(found["bytes"]) > 1 << 20 and int(found[control]) > 0  # it did look
        assert found[bob_principal] == found[control], found  # no copy but its own needle
    assert A.assert_clean_end(r)["via"] == "daemon"


def test_forged_follow_up_from_a_local_worker_never_reaches_the_cache(
    pt_rig: Rig, tmp_world: Path, cbin: Path, reports_dir: Path, tmp_path: Path
) -> None:
    """ATTACK: code in alice's local worker (her plugin, in followup mode) writes a forged
    failure and then a forged follow-up line: a credential for alice@REALM in the shape the
    daemon's cache checks, as a gssproxy worker's export comes after its result, ending decades
    from now. Secure: a follow-up is read only from the gssproxy worker whose result the step
    took, never from a local one: her next access uses the genuine credential gssproxy made
    for the first (no S4U2Self), not the forgery."""
    lab = pt_rig.lab
    alice = lab.users["alice"]
    principal = f"alice@{lab.realm}"
    so = A.evil_plugin(cbin, reports_dir, "followup", principal=principal)
    conf = _conf(lab, tmp_world, so)
    cc = f"FILE:/tmp/cc-alice-{secrets.token_hex(4)}"
    env = lab.env(KRB5CCNAME=cc, PW=alice.password)
    with warm_daemon(tmp_path) as sock:
        with A.hostile_caller(lab, "alice", env, _user_ns_argv(conf, cc)) as c:
            _clear(reports_dir)
            desc = A.description(lab, alice.uid, c.pid)
            args = ["--policy", str(pt_rig.policy), "--host-krb5-config", str(lab.krb5_conf)]
            r = A.dry_run(lab, desc, tmp_world, *args, "--socket", str(sock))
        assert A.reports(reports_dir), f"followup plugin never loaded:\n{r.text()}"
        doc = A.assert_clean_end(r)
        # her own step "failed" (her code said so), and gssproxy gave her a genuine token
        assert doc["outcome"] == "ok" and doc["source"] == "proxy", json.dumps(doc, indent=1)
        assert doc["principal"] == principal and doc["via"] == "daemon", r.text()
        again = proxy_upcall(pt_rig, "alice", tmp_world, "--socket", str(sock))
    assert again.ok and again.doc["via"] == "daemon", again.trail_text()
    trail = again.trail_text()
    assert "cached credential: no S4U2Self" in trail, trail
    assert "cached credential not used" not in trail, trail
