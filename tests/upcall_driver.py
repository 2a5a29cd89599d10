"""Drive the real helper the way the kernel's request would: a caller process in the lab's
namespaces, a key description naming it, and `cifs-upcall --dry-run` run as root from the host.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.components.samba import SambaLab
from upcall.kernel.payload import SpnegoMsg

HELPER = "/opt/cifs-upcall/bin/cifs-upcall"


@dataclass(frozen=True)
class DryRun:
    doc: dict[str, Any]
    msg: SpnegoMsg | None
    stderr: str

    @property
    def ok(self) -> bool:
        return bool(self.doc["outcome"] == "ok")

    def trail_text(self) -> str:
        return "\n".join(f"{a['source']} {a['outcome']} {a['detail']}" for a in self.doc["trail"])


def _leaf(pid: int, comm: str, timeout: float = 10) -> int:
    """`ip netns exec ... setpriv ... prog` execs down to prog: wait until it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                return pid
        except FileNotFoundError:
            break
        time.sleep(0.05)
    raise RuntimeError(f"process {pid} never became {comm}")


@contextmanager
def caller(
    lab: SambaLab,
    user: str | None,
    env: dict[str, str],
    argv: Sequence[str] = ("sleep", "600"),
    leaf: str = "sleep",
) -> Iterator[int]:
    """A process of `user` in the lab's namespaces with exactly `env`; yields its pid once
    the exec chain has reached `leaf`."""
    proc = lab.popen(list(argv), user=user, env=env)
    try:
        yield _leaf(proc.pid, leaf)
    finally:
        proc.kill()
        proc.wait()


def description(
    lab: SambaLab,
    uid: int,
    pid: int,
    *,
    sec: str = "krb5",
    user: str | None = None,
    target: str | None = "app",
    host: str | None = None,
) -> str:
    d = f"ver=0x2;host={host or lab.fqdn};ip4={lab.ip};sec={sec};uid=0x{uid:x};creduid=0x{uid:x}"
    if user:
        d += f";user={user}"
    d += f";pid=0x{pid:x}"
    if target:
        d += f";upcall_target={target}"
    return d


def dry_run(
    lab: SambaLab,
    desc: str,
    workdir: Path,
    *args: str,
    krb5conf: Path | None = None,
    in_lab_ns: bool = False,
) -> DryRun:
    """Run the helper as root. Normally from the host's namespaces, as request-key would; with
    `in_lab_ns` inside the lab's network namespace, for cases where the helper itself must reach
    the KDC without entering the caller's (upcall_target=mount: the mount's host is the lab)."""
    out = workdir / f"payload-{time.monotonic_ns()}.bin"
    argv = [HELPER, "-k", str(krb5conf or lab.krb5_conf), "--host-krb5-config", str(lab.krb5_conf),
            *args, "--dry-run", desc,
            "--payload-out", str(out), "--json"]  # fmt: skip
    if in_lab_ns:
        argv = ["ip", "netns", "exec", lab.ns, *argv]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    doc = json.loads(res.stdout)
    msg = SpnegoMsg.unpack(out.read_bytes()) if out.exists() else None
    return DryRun(doc, msg, res.stderr)


def own_ticket_upcall(
    lab: SambaLab, name: str, workdir: Path, cc: str, *args: str, **desc: Any
) -> DryRun:
    """kinit `name` into `cc`, start their process with KRB5CCNAME=cc, dry-run its upcall."""
    user = lab.users[name]
    lab.kinit(user, cc)
    with caller(lab, name, lab.env(KRB5CCNAME=cc)) as pid:
        return dry_run(lab, description(lab, user.uid, pid, **desc), workdir, *args)


@contextmanager
def warm_daemon(tmp_path: Path) -> Iterator[Path]:
    """The installed helper's `serve` on a private socket in a root-only directory, for as long
    as the block runs; yields the socket (the client finds it with --socket)."""
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    sock = d / "upcall.sock"
    proc = subprocess.Popen([HELPER, "serve", "--socket", str(sock)], stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if sock.exists():
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "daemon exited"
            time.sleep(0.05)
        assert sock.exists(), "daemon never listened"
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)
