"""doctor --pid: the route from a caller's own network namespace (pyroute2, off the upcall
path), against a real namespace made here (loopback only)."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from upcall.doctor import checks, gather

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace")


def test_route_from_a_containers_network_namespace() -> None:
    from tests.components import netns

    name = f"cupdoc-{uuid.uuid4().hex[:8]}"
    netns.create(name, [], "127.0.0.1 localhost\n", "127.0.0.1")
    try:
        proc = subprocess.Popen(netns.exec_argv(name, ["sleep", "60"]))
        try:
            for _ in range(100):  # until `ip netns exec` has become sleep inside the namespace
                if os.readlink(f"/proc/{proc.pid}/exe").endswith("sleep"):
                    break
                subprocess.run(["sleep", "0.05"])
            unreachable = checks.route(gather.caller_route(proc.pid, "192.0.2.77"))
            assert unreachable.status.value == "FAIL", unreachable
            assert "its own network namespace" in unreachable.what
            local = checks.route(gather.caller_route(proc.pid, "127.0.0.1"))
            assert local.status.value == "ok" and "through lo" in local.what, local
        finally:
            proc.kill()
            proc.wait()
    finally:
        netns.delete(name)
