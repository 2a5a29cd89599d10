"""apply next to each distribution's /etc/gssproxy: the merged set is one a real gssproxy
0.9.1 starts on, or apply refuses, names the clashing file and writes nothing. Each refusal is
checked against the real daemon too: forced onto disk, the same set makes gssproxy exit."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gssproxy_conf import schema
from gssproxy_conf.errors import MergeConflict
from gssproxy_conf.install import plan
from gssproxy_conf.install.apply import apply, write_atomic

from .conftest import DATA
from .gp_harness import running_gssproxy

DISTRO = DATA / "distro"
LAYOUTS = sorted(p.name for p in DISTRO.iterdir() if p.is_dir())
NFS = {
    "no-nfs": "",
    "nfs-default-socket": "nfs: {enable: true}\n",
    "nfs-own-socket": "nfs: {enable: true, socket: /run/gssproxy/nfs/nfs.sock}\n",
}
# which distribution file a default-socket NFS client service collides with
CLASH = {"fedora": "99-network-fs-clients.conf", "rhel9": "99-nfs-client.conf"}

needs_gssproxy = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("gssproxy") or not shutil.which("unshare"),
    reason="needs root, gssproxy and unshare",
)


def _config(nfs: str) -> schema.m.Config:
    text = (DATA / "example.yaml").read_text()
    text = text.replace("nfs: {enable: true, impersonate: false}\n", nfs)
    return schema.load(text, "example.yaml")


def _layout(root: Path, distro: str) -> dict[str, str]:
    d = root / "etc/gssproxy"
    d.mkdir(parents=True)
    for p in (DISTRO / distro).iterdir():
        shutil.copy(p, d / p.name)
    return _tree(root)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


@needs_gssproxy
@pytest.mark.parametrize("nfs", list(NFS))
@pytest.mark.parametrize("distro", LAYOUTS)
def test_apply_next_to_distribution(distro: str, nfs: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    before = _layout(root, distro)
    p = plan.build(_config(NFS[nfs]))
    clash = CLASH.get(distro) if nfs == "nfs-default-socket" else None
    if clash is None:
        apply(p, root)
        with running_gssproxy(root, tmp_path / "work") as gp:
            log = gp.log_text()
        for svc in (
            "cifs-upcall-smb",
            "nfs-server",
            *(["cifs-upcall-nfs-client"] * bool(NFS[nfs])),
        ):
            assert f"[service/{svc}]" in log or svc in log, (svc, log)
        return
    with pytest.raises(MergeConflict) as ei:
        apply(p, root)
    msg = str(ei.value)
    assert "E-GSSPROXY-SET" in msg and clash in msg and "50-cifs-upcall-nfs.conf" in msg, msg
    assert _tree(root) == before  # nothing written
    # the refusal is real: forced onto disk, gssproxy does not start on this set
    for f in p.files:
        write_atomic(root / str(f.path).lstrip("/"), f.content, f.mode)
    with (
        pytest.raises(RuntimeError, match="gssproxy exited"),
        running_gssproxy(root, tmp_path / "work-forced"),
    ):
        pass


def test_dry_run_refuses_too(tmp_path: Path) -> None:
    root = tmp_path / "root"
    before = _layout(root, "fedora")
    with pytest.raises(MergeConflict):
        apply(plan.build(_config(NFS["nfs-default-socket"])), root, dry_run=True)
    assert _tree(root) == before


@needs_gssproxy
@pytest.mark.parametrize("distro", LAYOUTS)
def test_throwaway_gssproxy_trial(
    distro: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--try-gssproxy: a real daemon on the staged set decides; the lint is bypassed here (a
    stand-in for a clash only the daemon knows about) to show the trial alone refuses."""
    from gssproxy_conf.install import apply as apply_mod
    from gssproxy_conf.install.trial import try_gssproxy

    root = tmp_path / "root"
    before = _layout(root, distro)
    good = plan.build(_config(NFS["nfs-own-socket"]))
    apply(good, root, dry_run=True, trial=try_gssproxy)  # starts: no error
    assert _tree(root) == before
    if distro not in CLASH:
        return
    bad = plan.build(_config(NFS["nfs-default-socket"]))
    # fault injection: a clash the lint does not know about (only the daemon decides)
    monkeypatch.setattr(apply_mod, "merge_conflicts", lambda states, root: [])
    with pytest.raises(MergeConflict, match="throwaway gssproxy did not start"):
        apply(bad, root, trial=try_gssproxy)
    assert _tree(root) == before
