"""Session-wide real components. The Samba AD DC starts once per test session (about 5 s)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.components.samba import SambaLab, can_run_lab, reap_stale_labs, running_lab

pytest_plugins = ["tests.proxy_fixtures"]  # gssproxy rigs for test_proxy_*.py

# One lab per pytest process, so concurrent sessions never tear down each other's DC.
LAB_ID = os.getpid()
LAB_BASE = Path(os.environ.get("CIFS_UPCALL_LAB", f"/tmp/cifs-upcall-lab-{LAB_ID}"))


@pytest.fixture(scope="session")
def samba_lab() -> Iterator[SambaLab]:
    """Samba 4.17 AD DC for LAB.TEST in netns `lab.ns` (dc1.lab.test = 127.0.0.10).

    Pre-made: users alice (23001), bob (23002), carol (23003), dave (23004, Protected Users),
    erin (23005, NOT_DELEGATED); computer CLIENT1$ with keytab `lab.base/client1.keytab`.
    """
    why = can_run_lab()
    if why:
        pytest.skip(why)
    reap_stale_labs()
    with running_lab(LAB_BASE, ns=f"cuplab-{LAB_ID}") as lab:
        for i, name in enumerate(("alice", "bob", "carol", "dave", "erin")):
            lab.add_user(name, 23001 + i)
        lab.samba_tool("group", "addmembers", "Protected Users", "dave")
        lab.samba_tool("user", "sensitive", "erin", "on")
        lab.add_computer("client1")
        yield lab


@pytest.fixture
def tmp_world(tmp_path: Path) -> Path:
    """A per-test directory that unprivileged lab users can write into."""
    d = tmp_path / "w"
    d.mkdir()
    for p in (tmp_path, d):
        p.chmod(0o1777)
    # pytest's tmp root is 0700 root: make the chain traversable for lab users.
    for parent in tmp_path.parents:
        if parent == Path("/tmp") or parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    return d


# ---- RBCD lab: Samba 4.22 from a cached Debian trixie chroot (realm RBCD.TEST) ---------------
# Separate from `samba_lab` above: its own netns (cuplab2-<pid>), address, realm, state dir and
# uids, one per pytest process like `samba_lab`. Every test that uses it is marked `rbcd`
# (deselect with `-m 'not rbcd'`).

RBCD_LAB_NS = f"cuplab2-{LAB_ID}"
RBCD_LAB_BASE = Path(os.environ.get("CIFS_UPCALL_LAB_RBCD", f"/tmp/cifs-upcall-lab-rbcd-{LAB_ID}"))
RBCD_LAB_USERS = {"alice2": 24001, "bob2": 24002}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "samba_rbcd_lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.rbcd)


def _live_rbcd_labs() -> list[int]:
    """pids of pytest processes whose RBCD lab namespace exists and who are still alive."""
    from tests.components import netns

    pids = [n.rsplit("-", 1)[1] for n in netns.names("cuplab2-")]
    return [int(p) for p in pids if p.isdigit() and Path(f"/proc/{p}").exists()]


def _reap_stale_rbcd_labs() -> None:
    import shutil

    from tests.components import netns

    for name in netns.names("cuplab2-"):
        pid = name.rsplit("-", 1)[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            netns.delete(name)
            shutil.rmtree(f"/tmp/cifs-upcall-lab-rbcd-{pid}", ignore_errors=True)


@pytest.fixture(scope="session")
def samba_rbcd_lab() -> Iterator[SambaLab]:
    """Samba 4.22 AD DC (Heimdal KDC that honours RBCD) for RBCD.TEST in netns `lab.ns`
    (`cuplab2-<pid>`; dc2.rbcd.test = 127.0.0.20), run from the trixie chroot `lab.chroot`.

    Host tools (kinit, kvno, smbclient, gssproxy, python-gssapi) reach it through `lab.run(...)`
    inside the namespace; `lab.samba_tool(...)` runs the chroot's 4.22 samba-tool, and directory
    changes (e.g. `delegation add-principal 'DC2$' 'CLIENT2$'`) take effect at once.

    Pre-made: users alice2 (24001), bob2 (24002) in AD and as local users; computer CLIENT2$
    with keytab `lab.base/client2.keytab`, TRUSTED_TO_AUTH_FOR_DELEGATION on, NO
    msDS-AllowedToDelegateTo, and no RBCD grant on DC2$ (tests that grant it remove it again).
    Timings (s): `lab.chroot_seconds`, `lab.provision_seconds`, `lab.start_seconds`.
    Skips only if the chroot cannot be built here (no root, no debootstrap, no mirror, no disk).
    """
    import subprocess
    import time

    from tests.components.chroot import ensure_trixie_chroot, why_cannot_build

    why = "the lab needs root" if os.geteuid() != 0 else why_cannot_build()
    if why:
        pytest.skip(f"RBCD lab (Samba 4.22 trixie chroot) impossible here: {why}")
    t = time.monotonic()
    root = ensure_trixie_chroot()
    chroot_seconds = time.monotonic() - t
    _reap_stale_rbcd_labs()
    try:
        with running_lab(
            RBCD_LAB_BASE, ns=RBCD_LAB_NS, ip="127.0.0.20", realm="RBCD.TEST", domain="RBCD",
            hostname="dc2", chroot=root,
        ) as lab:  # fmt: skip
            lab.chroot_seconds = chroot_seconds  # type: ignore[attr-defined]
            for name, uid in RBCD_LAB_USERS.items():
                lab.add_user(name, uid)
            # These names and uids belong to the RBCD lab; they are removed below when no other
            # RBCD lab is live (teardown's rule looks at the 4.17 labs only).
            lab.local_users.clear()
            lab.add_computer("client2")
            lab.samba_tool("delegation", "for-any-protocol", "CLIENT2$", "on")
            yield lab
    finally:
        if not [p for p in _live_rbcd_labs() if p != LAB_ID]:
            for name in RBCD_LAB_USERS:
                subprocess.run(["userdel", name], capture_output=True)
