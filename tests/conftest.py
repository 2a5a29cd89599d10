"""Session-wide real components. The Samba AD DC starts once per test session (about 5 s)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.samba import SambaLab, can_run_lab, reap_stale_labs, running_lab

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
# Separate from `samba_lab` above: its own netns (cuplab2), address, realm, state dir and uids.
# Every test that uses it is marked `rbcd` (deselect with `-m 'not rbcd'`).

RBCD_LAB_BASE = Path(os.environ.get("CIFS_UPCALL_LAB_RBCD", "/tmp/cifs-upcall-lab-rbcd"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "samba_rbcd_lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.rbcd)


@pytest.fixture(scope="session")
def samba_rbcd_lab() -> Iterator[SambaLab]:
    """Samba 4.22 AD DC (Heimdal KDC that honours RBCD) for RBCD.TEST in netns `cuplab2`
    (dc2.rbcd.test = 127.0.0.20), run from the trixie chroot `lab.chroot`.

    Host tools (kinit, kvno, smbclient, gssproxy, python-gssapi) reach it through `lab.run(...)`
    inside `cuplab2`; `lab.samba_tool(...)` runs the chroot's 4.22 samba-tool, and directory
    changes (e.g. `delegation add-principal 'DC2$' 'CLIENT2$'`) take effect at once.

    Pre-made: users alice2 (24001), bob2 (24002); computer CLIENT2$ with keytab
    `lab.base/client2.keytab`, TRUSTED_TO_AUTH_FOR_DELEGATION on and NO msDS-AllowedToDelegateTo,
    and no RBCD grant on DC2$ (tests that grant it must remove it again).
    Timings: `lab.chroot_seconds`, `lab.provision_seconds`, `lab.start_seconds`.
    Skips only if the chroot cannot be built here (no root, no debootstrap, no mirror, no disk).
    """
    import time

    from tests.lab.chroot import ensure_trixie_chroot, why_cannot_build

    why = "the lab needs root" if os.geteuid() != 0 else why_cannot_build()
    if why:
        pytest.skip(f"RBCD lab (Samba 4.22 trixie chroot) impossible here: {why}")
    t = time.monotonic()
    root = ensure_trixie_chroot()
    chroot_seconds = time.monotonic() - t
    with running_lab(
        RBCD_LAB_BASE, ns="cuplab2", ip="127.0.0.20", realm="RBCD.TEST", domain="RBCD",
        hostname="dc2", chroot=root,
    ) as lab:  # fmt: skip
        lab.chroot_seconds = chroot_seconds  # type: ignore[attr-defined]
        for i, name in enumerate(("alice2", "bob2")):
            lab.add_user(name, 24001 + i)
        lab.add_computer("client2")
        lab.samba_tool("delegation", "for-any-protocol", "CLIENT2$", "on")
        yield lab
