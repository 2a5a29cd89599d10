"""Loopback-only network namespaces for the lab: nothing in them can reach another host."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path


def exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def create(name: str, addresses: list[str], hosts: str, nameserver: str) -> None:
    """Make `name` with only `lo` (plus extra 127/8 addresses) and its own hosts/resolv.conf."""
    if exists(name):
        delete(name)
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    for addr in addresses:
        subprocess.run(["ip", "-n", name, "addr", "add", addr, "dev", "lo"], check=True)
    etc = Path("/etc/netns", name)
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n{hosts}")
    (etc / "resolv.conf").write_text(f"nameserver {nameserver}\n")


def pids(name: str) -> list[int]:
    if not exists(name):
        return []
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def delete(name: str) -> None:
    import os
    import signal
    import time

    for sig in (signal.SIGTERM, signal.SIGKILL):
        victims = pids(name)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while victims and pids(name) and time.monotonic() < deadline:
            time.sleep(0.1)
    if exists(name):
        subprocess.run(["ip", "netns", "delete", name], check=False)
    etc = Path("/etc/netns", name)
    for f in ("hosts", "resolv.conf"):
        (etc / f).unlink(missing_ok=True)
    if etc.exists():
        etc.rmdir()


def exec_argv(name: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", name, *argv]
