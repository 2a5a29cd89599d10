"""Fixtures for the impersonation tests: a real gssproxy on a generated configuration.

The gssproxy service and the helper's policy are rendered by `gssproxy_conf` (the generator
this project ships), so these tests also prove that the generator's output drives the helper.
gssproxy runs inside the lab's network namespace (it talks to the KDC) with a private /run;
its SMB socket lives in a short root-only directory under /tmp that the helper, run from the
host namespace, reaches by path, as in production.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gssproxy_conf import schema
from gssproxy_conf.install import plan
from gssproxy_conf.install.apply import apply
from tests.components.samba import SambaLab
from tests.gssproxy_conf.gp_harness import Gssproxy, running_gssproxy
from tests.upcall_driver import DryRun, caller, description, dry_run

CONNECTED = "connected (fd = "  # gssproxy -d logs one such line per client connection


@dataclass
class Rig:
    lab: SambaLab
    gp: Gssproxy
    socket: Path
    policy: Path  # the generated policy (root-owned, 0644)
    root: Path  # the generated tree
    client: str  # the impersonating account, e.g. CLIENT1$
    stack: ExitStack
    work: Path

    def restart(self) -> None:
        """Stop gssproxy (if running) and start it again on the same files and socket."""
        self.stack.close()
        self.stack = ExitStack()
        self.gp = self.stack.enter_context(_gssproxy(self.lab, self.root, self.work))

    def log_offset(self) -> int:
        return len(self.gp.log_text())

    def log_since(self, offset: int) -> str:
        return self.gp.log_text()[offset:]

    def connections_since(self, offset: int) -> int:
        return self.log_since(offset).count(CONNECTED)

    def write_policy(self, name: str, text: str) -> Path:
        p = self.policy.parent / name
        p.write_text(text)
        p.chmod(0o644)
        return p

    def stop(self) -> None:
        os.kill(self.gp.pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{self.gp.pid}").exists() or _zombie(self.gp.pid):
                return
            import time

            time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def _config(lab: SambaLab, client: str, keytab: Path, socket: Path, extra: str) -> str:
    return (
        f"realm: {lab.realm}\n"
        f"client: {{principal: '{client}', keytab: {keytab}}}\n"
        f"smb: {{servers: [{lab.fqdn}], socket: {socket}, policy: local-first, deadline: 8}}\n"
        "nfs: {impersonate: false}\n"
        f"ad: {{account_uac: {{'{client}': 16781312}}}}\n"
        f"{extra}"
    )


@contextmanager
def gssproxy_rig(
    lab: SambaLab,
    client: str,
    keytab: Path,
    work: Path,
    extra: str = "",
    edit: Callable[[Path], None] | None = None,
) -> Iterator[Rig]:
    """gssproxy with the generated cifs-upcall service for `client`; the generated policy.
    `extra` is appended to the generator's input (e.g. protected_users); `edit(root)` may
    change the generated tree before gssproxy starts (an experiment's service options)."""
    # A short path (sun_path is 108 bytes) outside /run (gssproxy's /run is private).
    sockdir = Path(tempfile.mkdtemp(prefix="cup-gp-", dir="/tmp"))
    socket = sockdir / "cifs" / "cifs.sock"
    try:
        cfg = schema.load(_config(lab, client, keytab, socket, extra), "proxy-rig.yaml")
        root = work / "root"
        apply(plan.build(cfg), root)
        policy = root / "etc/cifs-upcall/policy.yaml"
        assert policy.exists()
        if edit is not None:
            edit(root)
        stack = ExitStack()
        rig = Rig(lab, stack.enter_context(_gssproxy(lab, root, work)), socket, policy, root,
                  client, stack, work)  # fmt: skip
        try:
            assert socket.is_socket(), rig.gp.log_text()
            assert (socket.parent.stat().st_mode & 0o777) == 0o700
            yield rig
        finally:
            rig.stack.close()
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)


def _gssproxy(lab: SambaLab, root: Path, work: Path) -> AbstractContextManager[Gssproxy]:
    return running_gssproxy(
        root, work / "gp", netns=lab.ns, env={"KRB5_CONFIG": str(lab.krb5_conf)}
    )


@pytest.fixture(scope="session")
def pt_lab(samba_lab: SambaLab) -> Iterator[SambaLab]:
    """The 4.17 lab with protocol transition for CLIENT1$ to cifs/dc1.lab.test (undone after)."""
    lab = samba_lab
    lab.samba_tool("delegation", "for-any-protocol", "CLIENT1$", "on")
    lab.samba_tool("delegation", "add-service", "CLIENT1$", f"cifs/{lab.fqdn}")
    yield lab
    lab.samba_tool("delegation", "del-service", "CLIENT1$", f"cifs/{lab.fqdn}", check=False)
    lab.samba_tool("delegation", "for-any-protocol", "CLIENT1$", "off", check=False)


@pytest.fixture(scope="module")
def pt_rig(pt_lab: SambaLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp("pt-rig")
    with gssproxy_rig(pt_lab, "CLIENT1$", pt_lab.base / "client1.keytab", work) as rig:
        yield rig


def proxy_upcall(
    rig: Rig,
    user: str,
    work: Path,
    *args: str,
    env: dict[str, str] | None = None,
    policy: Path | None = None,
) -> DryRun:
    """Dry-run the upcall of `user`'s process under the rig's policy (or `policy`). By default
    the process has no ticket: its KRB5CCNAME names a cache that does not exist."""
    lab = rig.lab
    cenv = env if env is not None else lab.env(KRB5CCNAME=f"FILE:{work}/none-{user}")
    with caller(lab, user, cenv) as pid:
        desc = description(lab, lab.users[user].uid, pid)
        return dry_run(lab, desc, work, "--policy", str(policy or rig.policy), *args)
