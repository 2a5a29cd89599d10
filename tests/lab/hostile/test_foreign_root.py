"""Python code of the caller's choosing imported by the helper after it entered her mount
namespace (issue #8, case 1; DESIGN.md rule 1 and rule 5's "crash reports without source
lines").

alice makes a user+mount namespace whose root (pivot_root) is a tree she populated: at every
directory of the helper's sys.path she put traceback.py, linecache.py, tokenize.py,
stringprep.py, unicodedata.py, encodings/idna.py, encodings/punycode.py, a `coding:` codec
(encodings/evilcodec.py) and copies of the helper's own package sources that declare that codec
(read by linecache when a traceback is formatted). Every one of them, if imported, writes a
marker with its euid and capability lines into /markers, which the test reads from the host.
In the FUSE variant the root is her FUSE file system: the helper's child, while its fsuid is
the host's root (unmapped in her namespace), gets EOVERFLOW for every request to it, so even
chdir("/") fails and the error paths run, while /usr, /opt, /work are her bind mounts
(not FUSE) and stay importable.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
from pathlib import Path

import pytest

from tests.components.samba import SambaLab
from tests.lab.hostile import _attacks as A

pytestmark = pytest.mark.lab

MARK = r"""
import os as _os
def _mark(_name):
    try:
        _st = open("/proc/self/status").read().splitlines()
        _caps = [l for l in _st if l.startswith(("Cap", "Uid", "NoNewPrivs"))]
        _fd = _os.open("/markers/%s-%d" % (_name, _os.getpid()), _os.O_WRONLY | _os.O_CREAT, 0o666)
        _os.write(_fd, ("euid=%d\n" % _os.geteuid() + "\n".join(_caps) + "\n").encode())
        _os.close(_fd)
    except Exception:
        pass
_mark(__name__)
"""
CODEC = (
    MARK
    + r"""
import codecs as _codecs
def getregentry():
    u = _codecs.lookup("utf-8")
    return _codecs.CodecInfo(u.encode, u.decode, name="evilcodec")
"""
)
MODULES = ("traceback", "linecache", "tokenize", "stringprep", "unicodedata", "_strptime",
           "locale", "gettext", "ipaddress", "socket", "selectors", "signal", "string")  # fmt: skip
ENCODINGS = ("idna", "punycode", "ascii", "latin_1", "utf_8", "evilcodec")


def _populate(root: Path, sleeper: Path, markers: Path) -> list[str]:
    """Her tree; returns the top-level directories she bind-mounts in the FUSE variant."""
    import upcall

    for top in ("markers", "oldroot", "tmp", "etc", "proc", "dev"):
        (root / top).mkdir(parents=True, exist_ok=True)
    shutil.copy(sleeper, root / "sleeper")
    dirs = [p for p in A.helper_sys_path() if p.startswith("/") and not p.endswith(".zip")]
    for p in dirs:
        d = root / p.lstrip("/")
        (d / "encodings").mkdir(parents=True, exist_ok=True)
        for m in MODULES:
            (d / f"{m}.py").write_text(MARK)
        for e in ENCODINGS:
            (d / "encodings" / f"{e}.py").write_text(CODEC if e == "evilcodec" else MARK)
    # the helper's own sources as her namespace shows them: a codec cookie on line 1, so
    # that merely reading them for a traceback imports her codec
    pkg = Path(upcall.__file__).parent
    for src in pkg.rglob("*.py"):
        dst = root / str(src).lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text("# -*- coding: evilcodec -*-\n" + MARK + src.read_text())
    A.chown(root, "alice", recursive=True)
    (root / "markers").chmod(0o1777)
    (root / "tmp").chmod(0o1777)
    return sorted({"/" + p.lstrip("/").split("/")[0] for p in dirs} | {"/markers", "/tmp"})


def _script(root: Path, mnt: Path | None, fuse: Path | None, tops: list[str], pidfile: Path) -> str:
    q = shlex.quote
    if fuse is None or mnt is None:
        return f"mount --bind {q(str(root))} {q(str(root))} && cd {q(str(root))} && " \
               "pivot_root . oldroot && exec /sleeper"  # fmt: skip
    binds = " && ".join(f"mount --rbind {q(str(root) + t)} {q(str(mnt) + t)}" for t in tops)
    return (
        f"{q(str(fuse))} passthrough {q(str(root))} {q(str(mnt))} -o "
        "allow_other,entry_timeout=86400,attr_timeout=86400,negative_timeout=86400 & "
        f"echo $! > {q(str(pidfile))}; "
        f"i=0; while [ ! -e {q(str(mnt))}/sleeper ] && [ $i -lt 100 ]; do "
        "sleep 0.05; i=$((i+1)); done; "
        f"{binds} && cd {q(str(mnt))} && pivot_root . oldroot && exec /sleeper"
    )


@pytest.mark.parametrize("kind", ["bind-root", "fuse-root"])
def test_no_code_of_the_caller_runs_in_the_helper(
    samba_lab: SambaLab, tmp_world: Path, sleeper_bin: Path, cbin: Path, kind: str
) -> None:
    """ATTACK: code execution as kuid 0 after setns through modules (and a source codec) at
    every sys.path directory of a root she controls; with a FUSE root, chdir("/") fails
    (EOVERFLOW) to drive the error paths that import traceback/linecache. Secure: no marker
    (none of her code ran in the helper), one outcome, no 'Traceback' in the output."""
    fuse = None
    if kind == "fuse-root":
        why = A.why_no_fuse()
        if why:
            pytest.skip(f"HOSTILE CASE 1 (FUSE root) NOT RUN: {why}")
        fuse = A.fusefs(cbin)
    tag = secrets.token_hex(3)
    root = tmp_world / f"root-{tag}"
    markers = root / "markers"
    tops = _populate(root, sleeper_bin, markers)
    mnt = A.world_dir(tmp_world, f"mnt-{tag}", 0o755) if fuse else None
    if mnt:
        A.chown(mnt, "alice")
    pidfile = tmp_world / f"fuse-{tag}.pid"
    script = _script(root, mnt, fuse, tops, pidfile)
    argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script]
    alice = samba_lab.users["alice"]
    env = samba_lab.env(KRB5CCNAME="FILE:/tmp/no-such-cc")
    try:
        with A.hostile_caller(samba_lab, "alice", env, argv, leaf="sleeper",
                              pidfiles=[pidfile]) as c:  # fmt: skip
            assert os.readlink(f"/proc/{c.pid}/root") == "/"  # her pivot_root took effect
            desc = A.description(samba_lab, alice.uid, c.pid)
            r = A.dry_run(samba_lab, desc, tmp_world, "--deadline", "8")
            r_dbg = A.dry_run(samba_lab, desc, tmp_world, "-d", "--deadline", "8")
        marks = {m.name: m.read_text() for m in sorted(markers.glob("*"))}
    finally:
        A.rmtree(root)
    print(r.text(), r_dbg.text(), sep="\n")
    assert not marks, f"her code ran in the helper: {marks}\n{r.text()}"
    for run in (r, r_dbg):
        A.assert_clean_end(run)
