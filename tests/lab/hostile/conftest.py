"""Fixtures for the hostile suite: compiled C fixtures (per session) and world-usable dirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab.hostile import _attacks


@pytest.fixture(scope="session")
def cbin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A world-traversable directory for binaries compiled from tests/lab/hostile/*.c."""
    d = tmp_path_factory.mktemp("hostile-bin")
    for p in (d, *d.parents):
        if p == Path("/tmp") or p == Path("/"):
            break
        p.chmod(p.stat().st_mode | 0o055)
    return d


@pytest.fixture(scope="session")
def sleeper_bin(cbin: Path) -> Path:
    return _attacks.sleeper(cbin)


@pytest.fixture(scope="session")
def fusefs_bin(cbin: Path) -> Path:
    why = _attacks.why_no_fuse()
    if why:
        pytest.skip(f"HOSTILE FUSE CASE NOT RUN: {why}")
    return _attacks.fusefs(cbin)


@pytest.fixture
def reports_dir(tmp_world: Path) -> Path:
    """Where the evil plugin writes its reports (1777: it may run as any uid)."""
    return _attacks.world_dir(tmp_world, "reports")
