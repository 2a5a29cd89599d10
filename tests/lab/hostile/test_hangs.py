"""Files that never answer: the deadline must hold whatever the child is stuck in (issue #8,
case 4, and extra cases: FIFO, /dev/zero and 10 GB sparse caches, a krb5.conf that is a
FIFO, a krb5.conf that includes itself)."""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.components.samba import SambaLab
from tests.lab.hostile import _attacks as A

pytestmark = pytest.mark.lab

DEADLINE = 3.0
MARGIN = 5.0  # exit within 8 s of a 3 s deadline


def _upcall(lab: SambaLab, work: Path, env: dict[str, str], argv: list[str] | None = None,
            leaf: str = "sleep", krb5conf: str | None = None) -> A.HelperRun:  # fmt: skip
    alice = lab.users["alice"]
    with A.hostile_caller(lab, "alice", env, argv or ["sleep", "600"], leaf=leaf) as c:
        desc = A.description(lab, alice.uid, c.pid)
        k = krb5conf or str(lab.krb5_conf)
        return A.dry_run(lab, desc, work, "--deadline", str(DEADLINE), krb5conf=k, timeout=60)


def _assert_bounded(r: A.HelperRun, reason: str | None = None) -> dict[str, object]:
    assert r.rc is not None, f"helper still running after 60 s (killed):\n{r.text()}"
    assert r.seconds < DEADLINE + MARGIN, f"took {r.seconds:.1f}s:\n{r.text()}"
    doc = A.assert_clean_end(r)
    assert doc["outcome"] == "failed", r.text()
    if reason:
        assert doc["reason"] == reason, r.text()
    return doc


def test_fuse_ccache_whose_read_never_returns(
    samba_lab: SambaLab, tmp_world: Path, fusefs_bin: Path
) -> None:
    """ATTACK: KRB5CCNAME=FILE:<fuse>/cc on a FUSE server that never answers READ: the child
    sleeps in the kernel on the user's behalf. Secure: the helper ends within its --deadline
    plus a margin with reason deadline-exceeded; the parent does not hang in waitpid."""
    back = A.world_dir(tmp_world, "fuse-back", 0o755)
    A.chown(back, "alice")  # the FUSE file "cc" is alice's own 0600 file
    mnt = tmp_world / f"fuse-{secrets.token_hex(3)}"
    with A.root_fuse(fusefs_bin, "hang-read", back, mnt):
        r = _upcall(samba_lab, tmp_world, samba_lab.env(KRB5CCNAME=f"FILE:{mnt}/cc"))
    _assert_bounded(r, "deadline-exceeded")


def _alice_file(path: Path) -> Path:
    A.chown(path, "alice")
    return path


def test_fifo_ccache(samba_lab: SambaLab, tmp_world: Path) -> None:
    """ATTACK (extra): KRB5CCNAME names a FIFO nobody writes to: open() blocks forever.
    Secure: deadline holds, one failed outcome."""
    fifo = tmp_world / "cc.fifo"
    os.mkfifo(fifo, 0o600)
    _alice_file(fifo)
    r = _upcall(samba_lab, tmp_world, samba_lab.env(KRB5CCNAME=f"FILE:{fifo}"))
    _assert_bounded(r)


@pytest.mark.parametrize("kind", ["dev-zero", "sparse-10g"])
def test_endless_or_huge_ccache(samba_lab: SambaLab, tmp_world: Path, kind: str) -> None:
    """ATTACK (extra): KRB5CCNAME=FILE:/dev/zero, or a 10 GB sparse file of zeros she owns.
    Secure: a prompt failure, bounded memory, no traceback."""
    if kind == "dev-zero":
        path = Path("/dev/zero")
    else:
        path = tmp_world / "cc.sparse"
        with open(path, "wb") as f:
            f.truncate(10 << 30)
        _alice_file(path)
    r = _upcall(samba_lab, tmp_world, samba_lab.env(KRB5CCNAME=f"FILE:{path}"))
    _assert_bounded(r)
    assert r.peak_rss_kb < 200_000, r.text()


def _own_ns_krb5conf(target: str) -> list[str]:
    """alice in her own user+mount namespace with `target` bound onto /etc/krb5.conf."""
    script = f"mount --bind {shlex.quote(target)} /etc/krb5.conf && exec sleep 600"
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script]


def test_krb5conf_that_is_a_fifo(samba_lab: SambaLab, tmp_world: Path) -> None:
    """ATTACK (extra): the caller's /etc/krb5.conf (her mount namespace) is a FIFO: the
    child's krb5_init_context blocks in open(). Secure: the deadline holds."""
    fifo = tmp_world / "krb5.fifo"
    os.mkfifo(fifo, 0o644)
    _alice_file(fifo)
    env = samba_lab.env(KRB5CCNAME=f"FILE:{tmp_world}/none")
    r = _upcall(samba_lab, tmp_world, env, _own_ns_krb5conf(str(fifo)), krb5conf="/etc/krb5.conf")
    _assert_bounded(r)


def test_krb5conf_include_loop(samba_lab: SambaLab, tmp_world: Path) -> None:
    """ATTACK (extra): her /etc/krb5.conf includes itself (and a directory of 2000 files that
    include each other). Secure: the deadline holds, one failed or ok outcome, no traceback."""
    conf = tmp_world / "krb5-loop.conf"
    inc = A.world_dir(tmp_world, "krb5-inc", 0o755)
    for i in range(2000):
        (inc / f"f{i}").write_text(f"include /etc/krb5.conf\ninclude {inc}/f{(i + 1) % 2000}\n")
    conf.write_text(f"include /etc/krb5.conf\nincludedir {inc}\n" + samba_lab.krb5_conf_text())
    subprocess.run(["chown", "-R", "alice:", str(conf), str(inc)], check=True)
    env = samba_lab.env(KRB5CCNAME=f"FILE:{tmp_world}/none")
    r = _upcall(samba_lab, tmp_world, env, _own_ns_krb5conf(str(conf)), krb5conf="/etc/krb5.conf")
    assert r.rc is not None and r.seconds < DEADLINE + MARGIN, r.text()
    A.assert_clean_end(r)
