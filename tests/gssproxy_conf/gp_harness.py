"""Run a real gssproxy on a generated configuration directory, and real GSS clients against it.

gssproxy runs as root inside ``unshare -m`` (optionally inside the lab's network namespace)
with a private tmpfs on /run (it writes /run/gssproxy.pid) and a test directory bound over
/var/lib/gssproxy/clients, so the generated paths are used as they are and the host is not
touched. The socket directories come from the generated tmpfiles.d rule, run through the real
systemd-tmpfiles. Clients join the daemon's namespaces with nsenter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PYTHON = "/opt/cifs-upcall/bin/python"
DEFAULT_SOCKET = "/run/gssproxy/default.sock"

CLIENT_SOURCE = r"""
import json, sys
import gssapi
req = json.loads(sys.argv[1])
try:
    krb5 = gssapi.MechType.kerberos
    name = (gssapi.Name(req["name"], gssapi.NameType.kerberos_principal)
            if req["name"] else None)
    creds = gssapi.Credentials(name=name, usage="initiate", mechs=[krb5])
    flags = gssapi.RequirementFlag.integrity | gssapi.RequirementFlag.out_of_sequence_detection
    ctx = gssapi.SecurityContext(
        name=gssapi.Name(req["target"], gssapi.NameType.hostbased_service),
        mech=krb5, creds=creds, flags=flags, usage="initiate")
    token = ctx.step()
    print(json.dumps({"ok": True, "initiator": str(ctx.initiator_name),
                      "token_len": len(token), "complete": bool(ctx.complete)}))
except Exception as exc:
    print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
"""


@dataclass(frozen=True)
class ClientResult:
    ok: bool
    initiator: str
    error: str
    raw: str


@dataclass
class Gssproxy:
    pid: int
    log: Path
    env: dict[str, str]

    def path(self, inside: str) -> Path:
        """A path as the daemon sees it (its private /run)."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def request(self, socket: str, name: str | None, target: str) -> ClientResult:
        """One GSS client process (the interposer connects once per process) as root."""
        env = {
            **self.env,
            "GSS_USE_PROXY": "yes",
            "GSSPROXY_BEHAVIOR": "REMOTE_ONLY",
            "GSSPROXY_SOCKET": socket,
            "KRB5CCNAME": "MEMORY:gpc-test",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        argv = [
            "nsenter",
            "-t",
            str(self.pid),
            "-m",
            "-n",
            "--",
            "env",
            "-i",
            *(f"{k}={v}" for k, v in env.items()),
            PYTHON,
            "-c",
            CLIENT_SOURCE,
            json.dumps({"name": name, "target": target}),
        ]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        lines = res.stdout.strip().splitlines()
        try:
            out = json.loads(lines[-1])
        except (IndexError, ValueError):
            return ClientResult(False, "", f"rc={res.returncode} {res.stderr}", res.stdout)
        return ClientResult(
            out["ok"], out.get("initiator", ""), out.get("error", ""), res.stdout + res.stderr
        )


@contextmanager
def running_gssproxy(
    root: Path,
    work: Path,
    *,
    netns: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 15,
) -> Iterator[Gssproxy]:
    """Start gssproxy on ``root``/etc/gssproxy (a generated tree); stop it by pid."""
    clients = work / "clients"
    clients.mkdir(parents=True, exist_ok=True)
    main = work / "gssproxy.conf"
    main.write_text("[gssproxy]\n  debug_level = 3\n")
    tmpfiles = root / "etc/tmpfiles.d/cifs-upcall-gssproxy.conf"
    script = " && ".join(
        [
            "set -e",
            "mount -t tmpfs -o mode=755 gpc-run /run",
            f"mount --bind {clients} /var/lib/gssproxy/clients",
            "mkdir -p /run/gssproxy",
            f"systemd-tmpfiles --create {tmpfiles}" if tmpfiles.exists() else "true",
            f"exec gssproxy -i -d --debug-level=3 -c {main} -C {root / 'etc/gssproxy'} "
            f"-s {DEFAULT_SOCKET}",
        ]
    )
    full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})}
    argv = [
        "env",
        "-i",
        *(f"{k}={v}" for k, v in full_env.items()),
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
    ]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    log = work / "gssproxy.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
    gp = Gssproxy(proc.pid, log, full_env)
    try:
        deadline = time.monotonic() + timeout
        while "Initialization complete." not in gp.log_text():
            if proc.poll() is not None:
                raise RuntimeError(f"gssproxy exited {proc.returncode}: {gp.log_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gssproxy not ready after {timeout}s: {gp.log_text()}")
            time.sleep(0.1)
        # exec chain ip -> env -> unshare -> sh -> gssproxy keeps one pid
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "gssproxy"
        yield gp
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
