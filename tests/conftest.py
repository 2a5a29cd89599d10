"""Session-wide real components. The Samba AD DC starts once per test session (about 5 s)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.samba import SambaLab, can_run_lab, running_lab

LAB_BASE = Path(os.environ.get("CIFS_UPCALL_LAB", "/tmp/cifs-upcall-lab"))


@pytest.fixture(scope="session")
def samba_lab() -> Iterator[SambaLab]:
    """Samba 4.17 AD DC for LAB.TEST in netns `cuplab` (dc1.lab.test = 127.0.0.10).

    Pre-made: users alice (23001), bob (23002), carol (23003), dave (23004, Protected Users),
    erin (23005, NOT_DELEGATED); computer CLIENT1$ with keytab `lab.base/client1.keytab`.
    """
    why = can_run_lab()
    if why:
        pytest.skip(why)
    with running_lab(LAB_BASE) as lab:
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
