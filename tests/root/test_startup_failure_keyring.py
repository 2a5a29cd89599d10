"""A flag the helper does not know, in a real request-key line: one log line and a short
negative key (not argparse's exit 2 into /dev/null and the kernel's 60 s).

Real /sbin/request-key and the real keyring, on `user` keys (no cifs.ko on this kernel), with a
temporary file in /etc/request-key.d that is removed afterwards. The handler is this worktree's
code through a shebang script (request-key gives a named interpreter a bare argv[0]).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.root.test_keyring import _proc_keys_line, request2

REPO = Path(__file__).resolve().parents[2]
CONF = Path("/etc/request-key.d/cifs-upcall-issue13-tests.conf")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to configure request-key")


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("startup")
    script = d / "cifs-upcall"
    script.write_text(
        "#!/opt/cifs-upcall/bin/python3\nimport sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from upcall.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    # a broken installation: one of the package's modules cannot be imported
    broken = d / "cifs-upcall-broken"
    broken.write_text(script.read_text().replace(
        "from upcall.cli", "sys.modules['upcall.pipeline'] = None\nfrom upcall.cli"))  # fmt: skip
    broken.chmod(0o755)
    log = d / "helper.log"
    CONF.write_text(
        f"create user cifs-upcall-broken:* * {broken} --log-file {log} %k\n"
        f"create user cifs-upcall-badflag3:* * {script} --log-file {log} --negate-timeout 3 "
        "--verbose %k\n"
        f"create user cifs-upcall-badflag:* * {script} --log-file {log} --verbose %k\n"
    )
    yield log
    CONF.unlink(missing_ok=True)


@pytest.mark.parametrize(("prefix", "allowed"), [
    ("cifs-upcall-badflag3", ("1s", "2s", "3s")),
    ("cifs-upcall-badflag", ("1s", "2s", "3s", "4s", "5s")),
])  # fmt: skip
def test_bad_flag_gives_short_negative_key_and_a_log_line(
    lines: Path, prefix: str, allowed: tuple[str, ...]
) -> None:
    desc = f"{prefix}:{uuid.uuid4().hex}"
    key, err, took = request2(desc)
    assert key is None and "Required key not available" in err
    assert took < 5
    fields = _proc_keys_line(desc)
    print(" ".join(fields))
    assert "N" in fields[1] and fields[3] in allowed, fields  # not the kernel's 1m
    serial = int(fields[0], 16)
    logged = [ln for ln in lines.read_text().splitlines() if f"key={serial} " in ln]
    assert len(logged) == 1, lines.read_text()
    print(logged[0])
    assert "outcome=refused" in logged[0] and "reason=bad-arguments" in logged[0]
    assert "unrecognized arguments: --verbose" in logged[0]
    timeout = allowed[-1].rstrip("s")
    assert f"negate_timeout={timeout}" in logged[0]


def test_broken_installation_gives_short_negative_key_and_a_log_line(lines: Path) -> None:
    desc = f"cifs-upcall-broken:{uuid.uuid4().hex}"
    key, err, _ = request2(desc)
    assert key is None and "Required key not available" in err
    fields = _proc_keys_line(desc)
    print(" ".join(fields))
    assert "N" in fields[1] and fields[3] in ("1s", "2s", "3s", "4s", "5s"), fields
    serial = int(fields[0], 16)
    logged = [ln for ln in lines.read_text().splitlines() if f"key={serial} " in ln]
    print("\n".join(logged))
    assert len(logged) == 1 and "reason=internal-error" in logged[0]
    assert "ModuleNotFoundError" in logged[0] and "upcall.pipeline" in logged[0]
