"""The gssproxy.service drop-in: parsed by systemd's own loader next to a hardened unit (the
properties of upstream gssproxy master's unit), KRB5_CONFIG only when krb5.conf needs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gssproxy_conf.install import plan
from gssproxy_conf.install.marker import strip
from gssproxy_conf.install.plan import HostFacts
from gssproxy_conf.render.systemd import DROPIN_FILE, includes_snippet_dir

HARDENED_UNIT = """\
[Unit]
Description=GSSAPI Proxy Daemon
[Service]
Type=notify
ExecStart=/usr/sbin/gssproxy -i
ProtectSystem=strict
ReadWritePaths=/root /home /run/user
PrivateNetwork=yes
IPAddressDeny=any
RestrictAddressFamilies=AF_UNIX
[Install]
WantedBy=multi-user.target
"""


def test_krb5_includedir_detection() -> None:
    debian = "[libdefaults]\n\tdefault_realm = ATHENA.MIT.EDU\n"
    rhel = "includedir /etc/krb5.conf.d/\n[libdefaults]\n"
    assert not includes_snippet_dir(debian) and not includes_snippet_dir(None)
    assert includes_snippet_dir(rhel) and includes_snippet_dir("includedir /etc/krb5.conf.d\n")
    assert not includes_snippet_dir("includedir /etc/other.d/\n")


def test_krb5_config_only_without_includedir(example) -> None:
    without = plan.build(example).get(DROPIN_FILE)
    with_dir = plan.build(example, HostFacts(krb5_includedir=True)).get(DROPIN_FILE)
    assert without and with_dir
    krb5 = "Environment=KRB5_CONFIG=/etc/krb5.conf:/etc/krb5.conf.d/cifs-upcall.conf"
    assert krb5 in without.content and "KRB5_CONFIG" not in with_dir.content
    for line in ("ReadWritePaths=-/run/gssproxy/cifs", "PrivateNetwork=no", "IPAddressDeny="):
        assert line in without.content.splitlines()


def _verify(tmp_path: Path, dropin: str) -> str:
    (tmp_path / "gssproxy.service").write_text(HARDENED_UNIT)
    (tmp_path / "gssproxy.service.d").mkdir(exist_ok=True)
    (tmp_path / "gssproxy.service.d/cifs-upcall.conf").write_text(dropin)
    res = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "gssproxy.service")],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return res.stdout + res.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_loads_the_dropin_cleanly(example, tmp_path: Path) -> None:
    f = plan.build(example).get(DROPIN_FILE)
    assert f
    out = _verify(tmp_path, f.content)
    assert "cifs-upcall.conf" not in out, out
    # negative control: the loader does read the drop-in and reports what it cannot use
    out = _verify(tmp_path, strip(f.content) + "ReadWritePath=/x\n")
    assert "Unknown key 'ReadWritePath'" in out, out
