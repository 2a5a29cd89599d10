"""doctor's pure parts: the checks over facts, request-key's debug output, the Kerberos wire
format, and the startup-failure argv handling. No root, no network."""

from __future__ import annotations

import calendar
import struct
import time

import pytest

from upcall.cli import startup_options, startup_serial
from upcall.doctor import checks, kerberos
from upcall.doctor.facts import KdcFacts, Krb5Facts, PolicyFacts, RequestKeyFacts, SocketFacts
from upcall.doctor.gather import parse_request_key_debug
from upcall.doctor.report import Status

RK_OUTPUT = """\
Key descriptor: "cifs.spnego;0;0;39010000;ver=0x2;host=fs1;..."
__ SCAN request-key.d __
__ read a.conf __
a.conf:1: Line matches '/usr/sbin/cifs-upcall --verbose %k' (0,0,77,1)
a.conf:1: Prefer command (0,0,77,1)
__ read cifs.spnego.conf __
cifs.spnego.conf:1: Line matches '/usr/sbin/cifs.upcall %k' (0,0,85,1)
execute_program('x','/usr/sbin/cifs-upcall --verbose %k')
Run /usr/sbin/cifs-upcall
- argv[0] = "cifs-upcall"
- argv[1] = "--verbose"
- argv[2] = "1"
"""


def test_request_key_debug_output_names_the_chosen_line() -> None:
    f = parse_request_key_debug(RK_OUTPUT)
    assert f.program == "/usr/sbin/cifs-upcall"
    assert f.argv == ("--verbose", "1") and f.where == "a.conf:1"
    c = checks.request_key_args(f)
    assert c is not None and c.status is Status.FAIL
    assert "unrecognized arguments: --verbose" in c.what


def test_no_line() -> None:
    f = parse_request_key_debug("Key type: cifs.spnego\nrequest-key: Key not found\n")
    c = checks.request_key(f)
    assert c.status is Status.FAIL and "ver=0x2;*" in c.fix


def test_cifs_utils_wins() -> None:
    f = RequestKeyFacts("/usr/sbin/cifs.upcall", ("1",), "/etc/request-key.d/cifs.spnego.conf:1")
    c = checks.request_key(f)
    assert c.status is Status.FAIL and "cifs-utils' line wins" in c.line()


def test_interpreter_line_is_ours_and_its_args_parse() -> None:
    f = RequestKeyFacts("/usr/bin/python3", ("-m", "upcall", "-d", "1"), "x.conf:1")
    assert checks.request_key(f).status is Status.OK
    c = checks.request_key_args(f)
    assert c is not None and c.status is Status.OK


def test_missing_serial() -> None:
    c = checks.request_key_args(RequestKeyFacts("/usr/sbin/cifs-upcall", ("-d",), "x.conf:1"))
    assert c is not None and c.status is Status.FAIL and "%k" in c.fix


@pytest.mark.parametrize(("mode", "uid", "status"), [
    (0o40700, 0, Status.OK), (0o40777, 0, Status.FAIL), (0o40750, 0, Status.FAIL),
    (0o40700, 1000, Status.FAIL),
])  # fmt: skip
def test_socket_directory(mode: int, uid: int, status: Status) -> None:
    f = SocketFacts("/run/gssproxy/cifs/cifs.sock", "impersonate", True, uid, mode)
    assert checks.socket(f).status is status


def test_socket_states() -> None:
    base = dict(socket="/r/c/s", kind="impersonate", dir_exists=True)
    assert (
        checks.socket(SocketFacts(**base, connect_error="Connection refused")).status is Status.FAIL
    )  # type: ignore[arg-type]
    f = SocketFacts(**base, probe_reason="proxy-no-service")  # type: ignore[arg-type]
    assert "no service for root" in checks.socket(f).what
    f = SocketFacts(**base, probe_reason="s4u2self-refused")  # type: ignore[arg-type]
    assert checks.socket(f).status is Status.OK  # the KDC answered: a service exists
    assert checks.socket(SocketFacts("/r/c/s", "impersonate", False)).status is Status.FAIL


def test_policy() -> None:
    f = PolicyFacts("/etc/p.yaml", True, True, "/etc/p.yaml: /etc/p.yaml is group- or world-"
                    "writable (mode 664)")  # fmt: skip
    c = checks.policy(f)
    assert c.status is Status.FAIL and "chmod go-w" in c.fix
    assert checks.policy(PolicyFacts("/etc/p.yaml", False, False)).status is Status.OK
    assert checks.policy(PolicyFacts("/etc/p.yaml", True, False)).status is Status.FAIL


def _k5(**kw: object) -> Krb5Facts:
    base: dict[str, object] = dict(files=("/etc/krb5.conf",), default_realm="LAB.TEST",
                                   forwardable="true")  # fmt: skip
    base.update(kw)
    return Krb5Facts(**base)  # type: ignore[arg-type]


def test_krb5() -> None:
    assert [c.status for c in checks.krb5(_k5(), protocol_transition=False)] == [Status.OK]
    out = checks.krb5(_k5(default_realm=None, forwardable=None, snippets=("cifs-upcall.conf",)),
                      protocol_transition=True)  # fmt: skip
    assert [c.name for c in out if c.status is Status.FAIL] == [
        "krb5",
        "krb5-includedir",
        "krb5-forwardable",
    ]
    ok = checks.krb5(_k5(snippets=("a.conf",), includedirs=("/etc/krb5.conf.d/",)),
                     protocol_transition=True)  # fmt: skip
    assert all(c.status is Status.OK for c in ok)


@pytest.mark.parametrize(("skew", "status"), [
    (0.4, Status.OK), (-90, Status.WARN), (600, Status.FAIL), (-301, Status.FAIL),
])  # fmt: skip
def test_clock(skew: float, status: Status) -> None:
    f = KdcFacts("dc:88", True, "udp", 1.0, 1000.0 + skew, 1000.0)
    c = checks.clock(f)
    assert c is not None and c.status is status
    if skew == 600:
        assert "600 s behind the KDC" in c.what


def test_as_req_is_der_and_krb_error_parses() -> None:
    req = kerberos.as_req("nobody", "LAB.TEST", 12345, 1_800_000_000)
    assert req[0] == 0x6A and len(req) == req[1] + 2
    # a KRB-ERROR as a KDC sends it: stime 2026-12-01 10:00:00, susec 500000, code 6
    g = b"20261201100000Z"

    def t(tag: int, body: bytes) -> bytes:
        return kerberos.tlv(tag, body)

    body = (t(0xA0, t(2, b"\x05")) + t(0xA1, t(2, b"\x1e")) + t(0xA4, t(0x18, g))
            + t(0xA5, t(2, (500000).to_bytes(3, "big"))) + t(0xA6, t(2, b"\x06"))
            + t(0xA9, t(0x1B, b"LAB.TEST")))  # fmt: skip
    err = kerberos.parse_krb_error(t(0x7E, t(0x30, body)))
    want = calendar.timegm(time.strptime("20261201100000", "%Y%m%d%H%M%S")) + 0.5
    assert err.stime == want and err.error_code == 6 and err.realm == "LAB.TEST"
    with pytest.raises(ValueError):
        kerberos.parse_krb_error(req)


def _kt_entry(comps: list[str], realm: str) -> bytes:
    def c(s: str) -> bytes:
        return struct.pack(">H", len(s)) + s.encode()

    body = struct.pack(">H", len(comps)) + c(realm) + b"".join(c(x) for x in comps)
    body += struct.pack(">IIBH", 1, 0, 1, 18) + c("k" * 32)
    return struct.pack(">i", len(body)) + body


def test_keytab_first_entry_skips_holes() -> None:
    data = b"\x05\x02" + struct.pack(">i", -10) + b"\0" * 10
    data += _kt_entry(["CLIENT1$"], "LAB.TEST") + _kt_entry(["host", "c1"], "LAB.TEST")
    from upcall.krb5.keytab import KeytabError, first_entry

    assert first_entry(data).principal == "CLIENT1$@LAB.TEST"
    with pytest.raises(KeytabError, match="no entries"):
        first_entry(b"\x05\x02")
    with pytest.raises(ValueError):
        first_entry(b"\x05\x01")


@pytest.mark.parametrize(("argv", "serial", "timeout"), [
    (["--verbose", "123"], 123, 5),
    (["--negate-timeout", "3", "--verbose", "77"], 77, 3),
    (["--negate-timeout", "x", "9"], 9, 5),
    (["--verbose"], None, 5),
])  # fmt: skip
def test_startup_failure_argv(argv: list[str], serial: int | None, timeout: int) -> None:
    assert startup_serial(argv) == serial
    assert startup_options(argv)[0] == timeout


def test_route_check_names_the_namespace_and_the_fix() -> None:
    from upcall.doctor.facts import RouteFacts

    good = checks.route(RouteFacts(7, "fs1", "10.0.0.5", routed=True, device="eth0",
                                   source="10.0.0.9", gateway="10.0.0.1"))  # fmt: skip
    assert good.status.value == "ok" and "through eth0 via 10.0.0.1" in good.what
    assert "its own network namespace" in good.what
    bad = checks.route(RouteFacts(7, "fs1", "10.0.0.5", error="Network is unreachable"))
    assert bad.status.value == "FAIL" and "no route to 10.0.0.5" in bad.what
    assert "route to the file server" in bad.fix
    gone = checks.route(RouteFacts(7, "fs1", None, "caller pid 7: No such file or directory"))
    assert gone.status.value == "FAIL" and "check the pid" in gone.fix
