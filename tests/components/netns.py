"""Loopback-only network namespaces for the lab: nothing in them can reach another host.

Namespaces are made, addressed and removed with pyroute2 (imported inside the functions: the
import costs ~0.2 s and a test run that never builds a lab should not pay it). They are the
usual named ones, /run/netns/<name> with /etc/netns/<name>/{hosts,resolv.conf}, so processes are
still started inside with `ip netns exec` (`exec_argv`), which also binds those two files.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys
from pathlib import Path

RUN_DIR = Path("/run/netns")

# rtnetlink scopes (linux/rtnetlink.h)
_RT_SCOPE_UNIVERSE = 0
_RT_SCOPE_HOST = 254


def exists(name: str) -> bool:
    return (RUN_DIR / name).exists()


def _scope(address: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> int:
    """The scope `ip addr add` picks when none is given: host for 127/8, universe otherwise.

    The kernel refuses a universe-scoped 127/8 address on lo (EINVAL), so this is not optional.
    """
    if address.version == 4 and address.ip in ipaddress.IPv4Network("127.0.0.0/8"):
        return _RT_SCOPE_HOST
    return _RT_SCOPE_UNIVERSE


def create(name: str, addresses: list[str], hosts: str, nameserver: str) -> None:
    """Make `name` with only `lo` (plus extra 127/8 addresses) and its own hosts/resolv.conf."""
    from pyroute2 import NetNS
    from pyroute2 import netns as pr_netns

    if exists(name):
        delete(name)
    try:
        pr_netns.create(name)
    except BaseException:
        # pyroute2 makes the mount point before it unshares and binds; `ip netns add` removes
        # it on failure, so do the same rather than leave a dead /run/netns/<name>.
        with contextlib.suppress(OSError):
            pr_netns.remove(name)
        raise
    # NetNS runs the netlink socket in a forked proxy inside the namespace, so this process
    # never changes namespace; flags=0: use the one just made, never create one. Leaving the
    # `with` stops and reaps the proxy (else it would show up in `pids(name)`).
    with NetNS(name, flags=0) as ns:
        (lo,) = ns.link_lookup(ifname="lo")
        ns.link("set", index=lo, state="up")
        for addr in addresses:
            iface = ipaddress.ip_interface(addr)
            ns.addr(
                "add",
                index=lo,
                address=str(iface.ip),
                prefixlen=iface.network.prefixlen,
                scope=_scope(iface),
            )
    etc = Path("/etc/netns", name)
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n{hosts}")
    (etc / "resolv.conf").write_text(f"nameserver {nameserver}\n")


def pids(name: str) -> list[int]:
    """Processes in namespace `name` (what `ip netns pids` prints), found by the ns inode.

    Not `pyroute2.netns.ns_pids()`: that stats every namespace under /run/netns and raises if
    one vanishes mid-scan, and other sessions' labs come and go there.
    """
    try:
        st = (RUN_DIR / name).stat()
    except FileNotFoundError:
        return []
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ns = os.stat(f"/proc/{entry.name}/ns/net")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # exited meanwhile, or a kernel thread
        if (ns.st_dev, ns.st_ino) == (st.st_dev, st.st_ino):
            found.append(int(entry.name))
    return found


def delete(name: str) -> None:
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
        from pyroute2 import netns as pr_netns

        try:
            pr_netns.remove(name)  # umount2(MNT_DETACH) + unlink, as `ip netns delete`
        except FileNotFoundError:
            pass  # another session's reaper got there first
        except OSError as e:
            # `ip netns delete` (run with check=False) reported and went on: so does this.
            print(f"netns.delete({name!r}): {e}", file=sys.stderr)
    etc = Path("/etc/netns", name)
    for f in ("hosts", "resolv.conf"):
        (etc / f).unlink(missing_ok=True)
    if etc.exists():
        etc.rmdir()


def names(prefix: str = "") -> list[str]:
    """Named namespaces (/run/netns) starting with `prefix`, this session's or anyone's."""
    from pyroute2 import netns as pr_netns

    return sorted(n for n in pr_netns.listnetns(str(RUN_DIR)) if n.startswith(prefix))


def exec_argv(name: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", name, *argv]
