"""The keyring edge against the real kernel keyring and the real /sbin/request-key.

cifs.spnego keys exist only with cifs.ko (not on this kernel: see vm/ for that), so:
- instantiate/negate are driven through request-key on `user` keys by tests/keyring_handler.py;
- the forged-key refusal runs the real helper on a `user` key whose description is a perfect
  cifs.spnego description, requested by an unprivileged user: the attack of CVE-2026-46243.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

keyutils = pytest.importorskip("keyutils")

REPO = Path(__file__).resolve().parents[2]
PY = "/opt/cifs-upcall/bin/python"
CONF = Path("/etc/request-key.d/cifs-upcall-tests.conf")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to configure request-key")


@pytest.fixture(scope="module")
def request_key_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("keyring") / "helper.log"
    CONF.write_text(
        # By path, through its shebang: request-key gives a named interpreter a bare argv[0],
        # with which Python finds its prefix via PATH and misses the venv.
        f"create user cifs-upcall-test:* * {REPO}/tests/keyring_handler.py %k\n"
        f"create user ver=0x2;* * /opt/cifs-upcall/bin/cifs-upcall --log-file {log} %k\n"
    )
    yield log
    CONF.unlink(missing_ok=True)


def request2(desc: str, *, user: str | None = None) -> tuple[str | None, str, float]:
    """`keyctl request2`: request_key(2) with callout info, so the kernel runs request-key.

    (python-keyutils' request_key passes no callout info: the kernel then only searches.)
    Returns the payload read back in the same session (possession is needed to read it).
    """
    script = 'k=$(keyctl request2 user "$1" x @s) || exit 1; keyctl pipe "$k"'
    argv = ["keyctl", "session", "-", "sh", "-c", script, "sh", desc]  # a fresh session keyring
    if user:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    t = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    took = time.monotonic() - t
    return (res.stdout if res.returncode == 0 else None), res.stderr, took


def test_instantiate_through_request_key(request_key_conf: Path) -> None:
    tag = uuid.uuid4().hex
    payload, err, _ = request2(f"cifs-upcall-test:ok:{tag}")
    assert payload == f"payload:{tag}:user:0", err


def _proc_keys_line(desc: str, user: str | None = None) -> list[str]:
    """The /proc/keys row (serial flags usage timeout perm uid gid type desc), as `user` sees it."""
    argv = ["cat", "/proc/keys"]
    if user:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return next(ln for ln in text.splitlines() if desc in ln).split()


def test_negate_through_request_key_is_prompt_and_short(request_key_conf: Path) -> None:
    desc = f"cifs-upcall-test:negate:{uuid.uuid4().hex}"
    key, err, took = request2(desc)
    assert key is None and "Required key not available" in err
    assert took < 5
    # A negative key (flag N) that expires in our 3 s, not the kernel's 60 s.
    fields = _proc_keys_line(desc)
    assert "N" in fields[1] and fields[3] in ("1s", "2s", "3s"), fields


FORGED = (
    "ver=0x2;host=dc1.lab.test;ip4=127.0.0.10;sec=krb5;uid=0x0;creduid=0x0;pid=0x1;"
    "upcall_target=app;tag={tag}"
)


def _assert_forged_refused(log: Path, offset: int, desc: str, owner: str) -> None:
    new = log.read_text()[offset:]
    assert "outcome=refused" in new and "reason=foreign-key" in new, new
    assert "not cifs.spnego" in new
    fields = _proc_keys_line(desc, user=None if owner == "0" else owner)
    assert "N" in fields[1] and fields[5] == owner, fields  # negated; owned by the requester
    assert fields[3] in ("1s", "2s", "3s", "4s", "5s"), fields  # our timeout, not 60 s


def test_user_forged_cifs_description_is_refused(request_key_conf: Path) -> None:
    # An unprivileged user requests a key carrying a cifs.spnego description that claims uid 0
    # and points at init's namespaces: the CVE-2026-46243 attack shape. Kernels differ: some run
    # request-key for her (then the real helper must refuse), some (6.18 here) refuse an
    # unprivileged request_key with callout info outright (ENOENT, no helper runs). Both are
    # asserted; which one this kernel did is printed.
    desc = FORGED.format(tag=uuid.uuid4().hex)
    offset = len(request_key_conf.read_text()) if request_key_conf.exists() else 0
    key, err, took = request2(desc, user="65534")
    assert key is None and took < 5
    ran = request_key_conf.exists() and len(request_key_conf.read_text()) > offset
    if ran:
        print(f"kernel {os.uname().release}: ran request-key for uid 65534; helper refused")
        assert "Required key not available" in err
        _assert_forged_refused(request_key_conf, offset, desc, "65534")
    else:
        print(f"kernel {os.uname().release}: refused uid 65534's request_key itself ({err!r})")
        assert "No such file or directory" in err or "Required key not available" in err, err
        with pytest.raises(StopIteration):  # no key was ever constructed for her
            _proc_keys_line(desc, user="65534")


def test_root_requested_forged_description_is_refused_by_the_helper(
    request_key_conf: Path,
) -> None:
    # The helper's own refusal, on every kernel: root requests the forged description as a
    # `user` key, request-key runs the real helper, which must see a key cifs.ko never makes.
    desc = FORGED.format(tag=uuid.uuid4().hex)
    offset = len(request_key_conf.read_text()) if request_key_conf.exists() else 0
    key, err, took = request2(desc)
    assert key is None and "Required key not available" in err and took < 5
    _assert_forged_refused(request_key_conf, offset, desc, "0")


def test_helper_refuses_a_key_it_has_no_authority_over(tmp_path: Path) -> None:
    # Run by hand on an existing key (not under construction): no authority, nothing happens.
    key = keyutils.add_key(
        b"ver=0x2;host=x;sec=krb5;uid=0x0", b"v", keyutils.KEY_SPEC_PROCESS_KEYRING
    )
    log = tmp_path / "log"
    res = subprocess.run(
        [sys.executable, "-m", "upcall", "--log-file", str(log), str(key)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert res.returncode == 1
    assert "reason=keyring-failed" in log.read_text()
    assert keyutils.read_key(key) == b"v"
