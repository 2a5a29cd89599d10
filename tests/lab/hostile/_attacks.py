"""Shared machinery for the hostile tests: C fixtures compiled at run time, hostile callers,
and the installed helper run the way request-key runs it (root, host namespaces, an
environment of HOME and PATH only), with its stdout, stderr, --log-file, exit status, wall
time and peak RSS captured.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.components.samba import SambaLab

HERE = Path(__file__).resolve().parent
HELPER = "/opt/cifs-upcall/bin/cifs-upcall"
HELPER_PY = "/opt/cifs-upcall/bin/python"
SUMMARY = re.compile(r"cifs-upcall\[\d+\]: outcome=")
KERNEL_ENV = {"HOME": "/", "PATH": "/sbin:/bin:/usr/sbin:/usr/bin"}  # what request-key gets


# ---- C fixtures ------------------------------------------------------------------------------
def gcc(src: str, out: Path, *flags: str) -> Path:
    """Compile tests/lab/hostile/<src> into `out` (world-readable: callers of any uid use it)."""
    res = subprocess.run(
        ["gcc", "-Wall", "-O1", "-o", str(out), str(HERE / src), *flags],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"gcc {src} failed:\n{res.stderr}")
    out.chmod(0o755)
    return out


def evil_plugin(
    out_dir: Path, report_dir: Path, mode: str = "record", needles: Sequence[str] = (),
    principal: str = "",
) -> Path:  # fmt: skip
    """The krb5 plugin .so; its constructor writes report-* files into report_dir (scan mode:
    also scan-* files counting `needles` in its own memory; followup mode: forges a credential
    for `principal`)."""
    code = {"record": 0, "flood": 1, "forge": 2, "fds": 3, "scan": 4, "followup": 5}[mode]
    extra = [f'-DSCAN_NEEDLES="{"|".join(needles)}"'] if needles else []
    if principal:
        extra.append(f'-DFOLLOWUP_PRINCIPAL="{principal}"')
    return gcc("evil_plugin.c", out_dir / f"evil-{mode}.so", "-shared", "-fPIC",
               f"-DEVIL_MODE={code}", f'-DREPORT_DIR="{report_dir}"', *extra)  # fmt: skip


def sleeper(out_dir: Path) -> Path:
    return gcc("sleeper.c", out_dir / "sleeper", "-static", "-pthread")


def fusefs(out_dir: Path) -> Path:
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "fuse3"], capture_output=True, text=True
    )
    if flags.returncode != 0:
        raise RuntimeError("libfuse3-dev is not installed (pkg-config fuse3 failed)")
    return gcc("fusefs.c", out_dir / "fusefs", *flags.stdout.split())


def why_no_fuse() -> str | None:
    if not Path("/dev/fuse").exists():
        return "/dev/fuse does not exist on this machine: FUSE attacks cannot be staged"
    if subprocess.run(["pkg-config", "--exists", "fuse3"]).returncode != 0:
        return "libfuse3-dev is not installed (apt-get install libfuse3-dev fuse3)"
    return None


PLUGIN_INTERFACES = ("ccselect", "hostrealm", "localauth", "clpreauth")


def evil_krb5_conf(lab: SambaLab, so: Path, interfaces: Sequence[str] = PLUGIN_INTERFACES) -> str:
    """The lab's krb5.conf plus [plugins] naming the evil module for every interface."""
    plugins = "".join(f"\t{i} = {{\n\t\tmodule = evil:{so}\n\t}}\n" for i in interfaces)
    return lab.krb5_conf_text() + "[plugins]\n" + plugins


def reports(report_dir: Path) -> list[dict[str, str]]:
    """The evil plugin's reports: each a dict of `Key: value` / `key=value` lines."""
    out = []
    for p in sorted(report_dir.glob("report-*")):
        d: dict[str, str] = {"_file": p.name}
        for line in p.read_text(errors="replace").splitlines():
            k, sep, v = line.partition(":") if ":" in line.split("=")[0] else line.partition("=")
            if sep:
                d[k.strip()] = v.strip()
        out.append(d)
    return out


def assert_sandboxed(rep: dict[str, str]) -> None:
    """Foreign code that ran in the helper must hold no capability and no way to regain one."""
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(rep.get(cap, "ff"), 16) == 0, f"{cap}={rep.get(cap)} in {rep}"
    assert rep.get("NoNewPrivs") == "1", f"NoNewPrivs={rep.get('NoNewPrivs')} in {rep}"
    # the same, from capget(2)/prctl(2): immune to a /proc the caller replaced
    for k in ("capget_eff", "capget_prm", "capget_inh"):
        assert int(rep.get(k, "ff"), 16) == 0, f"{k}={rep.get(k)} in {rep}"
    assert rep.get("prctl_nnp") == "1" and rep.get("prctl_capbset_sys_admin") == "0", rep


# ---- running the helper ----------------------------------------------------------------------
@dataclass
class HelperRun:
    argv: list[str]
    rc: int | None  # None: killed by the test's own timeout
    stdout: str
    stderr: str
    log: str
    seconds: float
    peak_rss_kb: int  # max VmHWM/VmRSS seen for the helper's own pid (0 if never sampled)

    @property
    def doc(self) -> dict[str, Any] | None:
        try:
            d = json.loads(self.stdout)
        except ValueError:
            return None
        return d if isinstance(d, dict) else None

    def outcome_lines(self) -> list[str]:
        """The per-upcall summary lines (not -d's trail lines, which carry outcome=note...)."""
        return [ln for ln in self.log.splitlines() if SUMMARY.search(ln)]

    def text(self) -> str:
        return (
            f"argv={self.argv}\nrc={self.rc} seconds={self.seconds:.2f} "
            f"peak_rss_kb={self.peak_rss_kb}\n--- stdout\n{self.stdout[:4000]}\n"
            f"--- stderr\n{self.stderr[:4000]}\n--- log\n{self.log[:4000]}"
        )

    def trail_text(self) -> str:
        d = self.doc or {}
        return "\n".join(
            f"{a.get('source')} {a.get('outcome')} {a.get('detail')}" for a in d.get("trail", [])
        )


def _rss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    best = 0
    for line in text.splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            best = max(best, int(line.split()[1]))
    return best


def run_helper(
    args: Sequence[str],
    log_file: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 90,
    cwd: str = "/",
) -> HelperRun:
    """Run the installed helper as root with `args` (plus --log-file), request-key's way."""
    argv = [HELPER, "--log-file", str(log_file), *args]
    t = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env if env is not None else dict(KERNEL_ENV), cwd=cwd, start_new_session=True,
    )  # fmt: skip
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kb(proc.pid))
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc: int | None
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, err = proc.communicate()
        rc = None
    finally:
        done.set()
        sampler.join()
    seconds = time.monotonic() - t
    log = log_file.read_text(errors="replace") if log_file.exists() else ""
    summary = [ln for ln in log.splitlines() if SUMMARY.search(ln)]
    last = summary[-1][:300] if summary else log[-300:]
    print(f"helper rc={rc} {seconds:.2f}s rss={peak[0]}kB: {last}")
    return HelperRun(argv, rc, out.decode(errors="replace"), err.decode(errors="replace"), log,
                     seconds, peak[0])  # fmt: skip


def kill_group(pgid: int) -> None:
    """SIGKILL a process group this test started (start_new_session), by its id."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def dry_run(
    lab: SambaLab, desc: str, work: Path, *args: str, krb5conf: str | None = None,
    env: dict[str, str] | None = None, timeout: float = 90,
) -> HelperRun:  # fmt: skip
    """`cifs-upcall [-k krb5conf] ARGS --dry-run DESC --json` as request-key would run it."""
    k = ["-k", krb5conf] if krb5conf else []
    log = work / f"helper-{time.monotonic_ns()}.log"
    return run_helper([*k, *args, "--dry-run", desc, "--json"], log, env=env, timeout=timeout)


def description(lab: SambaLab, uid: int, pid: int, **kw: Any) -> str:
    from tests.upcall_driver import description as d

    return d(lab, uid, pid, **kw)


def assert_clean_end(r: HelperRun, *, json_out: bool = True) -> dict[str, Any]:
    """One outcome, no Python traceback anywhere, and (for --json) one JSON document."""
    for where, text in (("stderr", r.stderr), ("stdout", r.stdout), ("log", r.log)):
        assert "Traceback" not in text, f"Traceback in {where}:\n{r.text()}"
    assert r.rc in (0, 1), f"exit status {r.rc}:\n{r.text()}"
    assert len(r.outcome_lines()) == 1, f"not exactly one outcome line:\n{r.text()}"
    if not json_out:
        return {}
    doc = r.doc
    assert doc is not None and doc.get("outcome") in ("ok", "failed"), r.text()
    return doc


# ---- hostile callers -------------------------------------------------------------------------
@dataclass
class Caller:
    pid: int  # the process whose pid goes into the description
    proc: subprocess.Popen[bytes]
    extra_pids: list[int] = field(default_factory=list)


def _wait_comm(pid: int, comm: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                return
        except FileNotFoundError:
            break
        time.sleep(0.05)
    raise RuntimeError(f"caller {pid} never became {comm!r} (setup script failed?)")


def kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@contextlib.contextmanager
def hostile_caller(
    lab: SambaLab,
    user: str | None,
    env: dict[str, str],
    argv: Sequence[str],
    leaf: str = "sleep",
    pidfiles: Sequence[Path] = (),
    timeout: float = 20,
) -> Iterator[Caller]:
    """A process of `user` in the lab's network namespace running `argv` (a setup script that
    ends by exec'ing `leaf`). Every pid written to one of `pidfiles` (servers the script left
    running) is killed afterwards, as is the caller; their namespaces and mounts die with them."""
    proc = lab.popen(list(argv), user=user, env=env)
    c = Caller(proc.pid, proc)
    try:
        _wait_comm(proc.pid, leaf, timeout)
        yield c
    finally:
        for pf in pidfiles:
            with contextlib.suppress(OSError, ValueError):
                c.extra_pids.append(int(pf.read_text().split()[0]))
        for pid in c.extra_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


def mounted(path: Path) -> bool:
    target = str(path)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4] == target:
            return True
    return False


@contextlib.contextmanager
def root_fuse(binary: Path, mode: str, back: Path, mnt: Path, *opts: str) -> Iterator[Path]:
    """Our FUSE server, run as root in the host namespaces with allow_other; killed and lazily
    unmounted afterwards (its hung requests are aborted through /sys/fs/fuse/connections)."""
    mnt.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [str(binary), mode, str(back), str(mnt), "-o", ",".join(("allow_other", *opts))],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not mounted(mnt):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"fusefs {mode} did not mount on {mnt}: {err}")
            time.sleep(0.05)
        yield mnt
    finally:
        dev = None  # from mountinfo: a stat() of the mount point could hang
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            f = line.split()
            if f[4] == str(mnt):
                dev = int(f[2].split(":")[1])
        if dev is not None:
            with contextlib.suppress(OSError):
                Path(f"/sys/fs/fuse/connections/{dev}/abort").write_text("1")
        proc.kill()
        proc.wait()
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def world_dir(base: Path, name: str, mode: int = 0o1777) -> Path:
    d = base / name
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(mode)
    return d


def chown(path: Path, user: str, recursive: bool = False) -> None:
    argv = ["chown", *(["-R"] if recursive else []), f"{user}:", str(path)]
    subprocess.run(argv, check=True)


def helper_sys_path() -> list[str]:
    """The helper's sys.path as its script sees it (sys.path[0] is the script's directory)."""
    code = "import json, sys; print(json.dumps(sys.path[1:]))"
    res = subprocess.run([HELPER_PY, "-c", code], capture_output=True, text=True, check=True)
    rest: list[str] = json.loads(res.stdout)
    import upcall

    return [os.path.dirname(HELPER), *rest, str(Path(upcall.__file__).parent.parent)]


def rmtree(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)
