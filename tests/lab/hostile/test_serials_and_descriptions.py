"""Hostile command lines: key serials that overflow C types, and forged descriptions given to
--dry-run (issue #8, case 10, and extra: host= with odd characters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab.hostile import _attacks as A


@pytest.mark.parametrize("serial", ["2147483648", "4294967296", str(2**64), "-1", "0x10"])
def test_oversized_or_malformed_serial(tmp_path: Path, serial: str) -> None:
    """ATTACK: key serials past int32/uint32/uint64, negative, or hex. Secure: a clean failure,
    exit 1, a line in --log-file, no Traceback on stderr."""
    log = tmp_path / "helper.log"
    r = A.run_helper([serial], log, timeout=30)
    assert "Traceback" not in r.stderr and "Traceback" not in r.log, r.text()
    assert r.rc == 1, r.text()
    assert r.log.strip(), f"nothing in --log-file:\n{r.text()}"


HOSTS = [
    "dc1.lab.test@EVIL.TEST",
    "dc1/evil.lab.test",
    "dc1.lab.test\u2028outcome=ok",
    "-dc1.lab.test",
    "..",
    "a" * 2000,
    "dc1.lab.test%s%n",
    "d\u00e9.lab.test",
    "dc1.lab.test\x1b[2J",
    "",
]


@pytest.mark.parametrize("host", HOSTS, ids=range(len(HOSTS)))
def test_forged_host_in_dry_run(tmp_path: Path, host: str) -> None:
    """ATTACK (extra): host= with characters that would change the SPN (realm, another
    component), end a log line, or overflow. Secure: bad-description, no traceback, the raw
    control characters never reach the log."""
    desc = (f"ver=0x2;host={host};ip4=127.0.0.10;sec=krb5;uid=0x59d9;creduid=0x59d9;pid=0x1;"
            "upcall_target=app")  # fmt: skip
    log = tmp_path / "helper.log"
    r = A.run_helper(["--dry-run", desc, "--json"], log, timeout=30)
    assert "Traceback" not in r.stderr, r.text()
    assert r.rc == 1 and r.doc is not None, r.text()
    assert r.doc["reason"] == "bad-description", r.text()
    for ch in ("\u2028", "\x1b"):
        assert ch not in r.log, r.text()
