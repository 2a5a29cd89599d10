"""A real gssproxy 0.9.1 loads the generated services and binds every generated socket
(no KDC needed). The KDC-backed requests are in test_lab.py."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from gssproxy_conf.install import plan
from gssproxy_conf.install.apply import apply

from .gp_harness import DEFAULT_SOCKET, running_gssproxy

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("gssproxy") or not shutil.which("unshare"),
    reason="needs root, gssproxy and unshare",
)


def test_generated_services_load_and_bind(example, tmp_path: Path) -> None:
    root = tmp_path / "root"
    apply(plan.build(example), root)
    with running_gssproxy(root, tmp_path / "work") as gp:
        log = gp.log_text()
        cifs_dir = gp.path("/run/gssproxy/cifs")
        # the tmpfiles.d rule made the root-only directory
        assert stat.S_IMODE(cifs_dir.stat().st_mode) == 0o700
        for sock in (
            "/run/gssproxy/cifs/cifs.sock",
            "/run/gssproxy/cifs/protected-svc-backup.sock",
            DEFAULT_SOCKET,
        ):
            assert stat.S_ISSOCK(gp.path(sock).stat().st_mode), (sock, log)
        for svc in (
            "cifs-upcall-smb",
            "cifs-upcall-nfs-client",
            "cifs-upcall-protected-svc-backup",
        ):
            assert f"service/{svc}" in log or svc in log, log
        # each socket reaches its own service: a request (failing later, no KDC here)
        # must be matched to the right service
        for sock, svc in (
            ("/run/gssproxy/cifs/cifs.sock", "cifs-upcall-smb"),
            (DEFAULT_SOCKET, "cifs-upcall-nfs-client"),
            ("/run/gssproxy/cifs/protected-svc-backup.sock", "cifs-upcall-protected-svc-backup"),
        ):
            before = len(gp.log_text())
            gp.request(
                sock, "someone@EXAMPLE.COM" if "nfs" not in svc else None, "cifs@fs1.example.com"
            )
            assert f"Connection matched service {svc}" in gp.log_text()[before:], gp.log_text()[
                before:
            ]


def test_duplicate_service_across_files_is_what_check_reports(example, tmp_path: Path) -> None:
    """The trap check warns about is real: gssproxy drops the second section."""
    root = tmp_path / "root"
    apply(plan.build(example), root)
    smb = (root / "etc/gssproxy/50-cifs-upcall-smb.conf").read_text()
    (root / "etc/gssproxy/60-copy.conf").write_text(
        smb.split("\n", 1)[1].replace("cifs.sock", "copy.sock")
    )
    with running_gssproxy(root, tmp_path / "work") as gp:
        assert gp.path("/run/gssproxy/cifs/cifs.sock").exists()
        assert not gp.path("/run/gssproxy/cifs/copy.sock").exists()
