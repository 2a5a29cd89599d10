"""What the thin client imports on the way a real key goes: the daemon's reply carried out,
the key instantiated (or negated), the log line written. Each module left out here costs
every upcall milliseconds (typing ~9 ms, dataclasses with inspect and ast ~8 ms, enum, ...):
the dry-run benchmark measures this same path minus the two keyring calls, so they must not
drag in anything the dry run does not load.

Run in a fresh `python3 -I -S` (as the launcher starts it). The two keyring calls are the one
fake here, named as such: a unit test has no key under construction to instantiate; the real
calls are in tests/root/test_keyring.py.
"""

import os
import subprocess
import sys
from pathlib import Path

from upcall import wire

from .test_client_wire import FakeDaemon

ROOT = str(Path(__file__).resolve().parents[2])
# where python3-cffi-backend and python3-keyutils are (the launcher's own list)
EXTRA = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]

# Never on the thin client's success paths.
HEAVY = ("os", "struct", "stat", "typing", "dataclasses", "enum", "inspect", "argparse", "json",
         "gssapi", "yaml",
         "contextlib", "upcall.errors", "upcall.cli", "upcall.respond",
         "upcall.pipeline")  # fmt: skip

SCRIPT = """
import sys
sys.path[:0] = [{root!r}]
sys.path += {extra!r}  # as the launcher: after the standard library
from upcall import client, wire
from upcall.kernel import _keyctl

# FAKE (named): no key is under construction in a unit test
calls = []
_keyctl.instantiate = lambda serial, payload, ring=0: calls.append(("instantiate", serial))
_keyctl.negate = lambda serial, timeout, ring=0: calls.append(("negate", serial))

ok = wire.Reply()
ok.payload, ok.exit = b"payload", 0
ok.lines = [(6, "outcome=ok key=123 source=ccache", b"")]
assert client.apply(ok, 123) == 0
refused = wire.Reply()
refused.lines = [(3, "outcome=failed key=124 reason=no-credentials", b"")]
assert client.apply(refused, 124) == 1
assert calls == [("instantiate", 123), ("negate", 124)], calls
print(" ".join(sorted(sys.modules)))
"""


def test_a_key_answered_by_the_daemon_loads_nothing_heavy() -> None:
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", SCRIPT.format(root=ROOT, extra=EXTRA)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    loaded = set(out.stdout.split())
    assert "upcall.kernel.keyring" in loaded and "upcall.log" in loaded  # the path ran
    assert sorted(loaded & set(HEAVY)) == []


def test_a_keyring_refusal_still_logs_its_reason() -> None:
    """The refusal path may load errors.py (only then): it still names the reason."""
    script = SCRIPT.format(root=ROOT, extra=EXTRA).split("# FAKE")[0] + (
        "import errno\n"
        "def refuse(serial, payload, ring=0):\n"
        "    raise OSError(errno.EKEYREVOKED, 'Key has been revoked')\n"
        "_keyctl.instantiate = refuse\n"
        "_keyctl.negate = lambda serial, timeout, ring=0: None\n"
        "from upcall import log\n"
        "lines = []\n"
        "log.emit = lambda prio, line, entry=None: lines.append(line)\n"
        "ok = wire.Reply()\n"
        "ok.payload, ok.exit = b'payload', 0\n"
        "assert client.apply(ok, 125) == 1\n"
        "print(lines)\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "reason=keyring" in out.stdout
    assert "cannot instantiate key 125: Key has been revoked" in out.stdout


def _answer(req: bytes, fds: list[int]) -> bytes:
    """What the (named fake) daemon of test_client_wire answers here: a fixed reply."""
    reply = wire.Reply()
    reply.exit, reply.stdout = 0, '{"outcome": "ok"}\n'
    reply.lines = [(6, "outcome=ok source=ccache", b"")]
    return wire.record(b"K", b"") + reply.encode()


def test_a_request_through_the_daemon_loads_nothing_heavy(tmp_path: Path) -> None:
    path = str(tmp_path / "upcall.sock")
    daemon = FakeDaemon(path, _answer)  # FAKE (named): proves what the client loads only
    desc = "ver=0x2;host=fs.example.com;ip4=127.0.0.1;sec=krb5;uid=0x3e8;creduid=0x3e8;"
    desc += f"pid=0x{os.getpid():x}"  # a live process: the client pins it
    script = SCRIPT.format(root=ROOT, extra=EXTRA).split("# FAKE")[0] + (
        f"code = client.run('dry', 0, ['--socket', {path!r}, '--dry-run', {desc!r}, '--json'])\n"
        "assert code == 0, code\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-I", "-S", "-c", script],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    finally:
        daemon.close()
    assert out.stdout == '{"outcome": "ok"}\n'  # the reply was carried out
    assert desc.encode() in daemon.request  # the request reached the daemon
    loaded = set(out.stderr.split())
    assert {"upcall.wire", "upcall.fdpass", "upcall.caller.pidpin"} <= loaded
    # a dry run loads what a key's way loads (the benchmarks measure it for the kernel's)
    assert {"keyutils", "upcall.kernel.keyring", "upcall.log"} <= loaded
    assert sorted(loaded & set(HEAVY)) == []
