"""The rendered request-key rule wins over cifs-utils' by keyutils' best-match rule, whichever
file is read first: checked with the real /sbin/request-key (-n: match, do not execute) in a
private mount namespace whose /etc/request-key.d holds only the files of each case."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gssproxy_conf.install import plan
from gssproxy_conf.render.requestkey import REQUEST_KEY_FILE, arguments

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("request-key") or not shutil.which("unshare"),
    reason="needs root, keyutils' request-key and unshare",
)

CIFS_UTILS = "create cifs.spnego * * /usr/sbin/cifs.upcall %k\n"
DESC = (
    "cifs.spnego;0;0;39010000;ver=0x2;host=fs1.example.com;ip4=10.0.0.5;sec=krb5;"
    "uid=0x3e8;creduid=0x3e8;pid=0x1a2b"
)


def _chosen(d: Path) -> list[str]:
    script = (
        f"mount --bind {d} /etc/request-key.d && "
        f"exec /sbin/request-key -d -n -v -D '{DESC}' create 1 0 0 0 0 0 x"
    )
    res = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    out = res.stdout + res.stderr
    run = re.search(r"^Run (\S+)$", out, re.MULTILINE)
    assert run, out
    args = re.findall(r'^- argv\[(\d+)\] = "(.*)"$', out, re.MULTILINE)
    return [run.group(1), *(a for i, a in args if i != "0")]


@pytest.mark.parametrize("ours_as", [REQUEST_KEY_FILE.name, "00-first.conf", "zz-last.conf"])
def test_ours_beats_cifs_utils_in_any_order(example, tmp_path: Path, ours_as: str) -> None:
    rule = plan.build(example).get(REQUEST_KEY_FILE)
    assert rule
    d = tmp_path / "rk"
    d.mkdir()
    (d / "cifs.spnego.conf").write_text(CIFS_UTILS)
    (d / ours_as).write_text(rule.content)  # as installed, marker line included
    assert _chosen(d) == [str(example.helper.path), *arguments(example), "1"]
    (d / ours_as).unlink()  # control: without ours, cifs-utils' rule is the one run
    assert _chosen(d) == ["/usr/sbin/cifs.upcall", "1"]
