"""Start a throwaway gssproxy on a staged configuration directory and report whether it got
through initialisation. Runs as root in a private mount namespace (``unshare -m``) with a
tmpfs on /run and on every other socket directory, so no socket or pid file of the real
daemon is touched; it is stopped by its pid.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path, PurePosixPath

from ..errors import Code, Problem
from ..lint.gssproxy_ini import parse
from .merged import Staged

READY = "Initialization complete."
TRIAL_SOCKET = "/run/gssproxy-conf-trial.sock"


def _socket_dirs(staged: Staged) -> set[PurePosixPath]:
    out = set()
    for f in staged.snippets:
        for s in parse(f.text).sections:
            sock = s.first("socket")
            if sock and sock.startswith("/"):
                out.add(PurePosixPath(sock).parent)
    return out


def try_gssproxy(staged: Staged, timeout: float = 15) -> list[Problem]:
    """[] if gssproxy starts on ``staged``; else one problem with the end of its log."""
    why = _cannot(staged)
    if why:
        return [Problem(Code.GSSPROXY_SET, f"cannot try gssproxy: {why}")]
    with tempfile.TemporaryDirectory(prefix="gssproxy-conf-trial-") as tmp:
        conf = Path(tmp) / "gssproxy"
        conf.mkdir()
        for f in staged.snippets:
            (conf / Path(f.path).name).write_text(f.text)
        main = Path(tmp) / "gssproxy.conf"
        # gssproxy logs "Initialization complete." only with a debug_level from the file;
        # sections repeated in one file merge and the first value wins, so ours goes first
        main.write_text(
            "[gssproxy]\n  debug_level = 1\n" + (staged.main.text if staged.main else "")
        )
        mounts = ["mount -t tmpfs -o mode=755 gpc-trial /run"]
        for d in sorted(_socket_dirs(staged)):
            if d.is_relative_to("/run"):
                mounts.append(f"mkdir -p {shlex.quote(str(d))}")
            else:
                mounts.append(f"mount -t tmpfs -o mode=700 gpc-trial {shlex.quote(str(d))}")
        script = " && ".join(
            [*mounts, f"exec gssproxy -i -d -c {main} -C {conf} -s {TRIAL_SOCKET}"]
        )
        log = Path(tmp) / "log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout
            while True:
                text = log.read_text(errors="replace")
                if READY in text:
                    return []
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = " | ".join(text.strip().splitlines()[-3:])
                    return [
                        Problem(
                            Code.GSSPROXY_SET,
                            f"a throwaway gssproxy did not start on the merged set "
                            f"(exit {proc.returncode}): {tail}",
                        )
                    ]
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()


def _cannot(staged: Staged) -> str | None:
    if os.geteuid() != 0:
        return "needs root (a private mount namespace)"
    for tool in ("gssproxy", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    for d in _socket_dirs(staged):
        if not d.is_relative_to("/run") and not Path(d).is_dir():
            return f"socket directory {d} does not exist (it would be created on the host)"
    return None
