"""Start-up failures of the helper end in one log line (never only argparse's stderr, which
request-key discards). In-process, no root: the keyring calls fail on a key that does not exist
and are logged too; the real negation is proven in tests/root/test_startup_failure_keyring.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import upcall
from upcall import cli


def test_unknown_flag_is_logged_not_exit_2_on_stderr(tmp_path: Path) -> None:
    log = tmp_path / "log"
    rc = cli.main(["--log-file", str(log), "--negate-timeout", "4", "--verbose", "999999"])
    assert rc == 2
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    assert "outcome=refused key=999999 reason=bad-arguments negate_timeout=4" in lines[0]
    assert "unrecognized arguments: --verbose" in lines[0]


def test_missing_module_is_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a broken installation: a module of the package cannot be imported
    monkeypatch.setitem(sys.modules, "upcall.pipeline", None)
    # `from . import pipeline` takes the package attribute if an earlier test imported it
    monkeypatch.delattr(upcall, "pipeline", raising=False)
    log = tmp_path / "log"
    rc = cli.main(["--log-file", str(log), "999998"])
    assert rc == 1
    text = log.read_text()
    assert "reason=internal-error" in text and "cannot start: ModuleNotFoundError" in text
    assert "upcall.pipeline" in text and "reinstall cifs-upcall" in text
