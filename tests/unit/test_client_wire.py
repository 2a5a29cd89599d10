"""The thin client and its wire protocol: records, the Reply round trip and malformed input,
the client's own argv reading, apply() with fake keyring calls, the daemon conversation
against a fake daemon on a tmp socket, and the in-process fallback with a fake pipeline."""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from upcall import client, log, pipeline, wire
from upcall.errors import KeyringError, Reason
from upcall.kernel import keyring
from upcall.kernel.request import Request

DESC = "ver=0x2;host=fs1.lab.test;ip4=192.0.2.10;sec=krb5;uid=0x3e8;creduid=0x3e8"


# ---- wire --------------------------------------------------------------------------------------


def test_records_split_complete_records_and_keep_the_rest() -> None:
    buf = wire.record(b"A", b"one") + wire.record(b"B", b"") + wire.record(b"C", b"three")
    recs, rest = wire.records(buf[:-2], 100)
    assert recs == [(b"A", b"one"), (b"B", b"")] and rest == buf[len(buf) - 10 : -2]
    recs, rest = wire.records(buf, 100)
    assert recs == [(b"A", b"one"), (b"B", b""), (b"C", b"three")] and rest == b""
    assert wire.records(b"\x00\x00", 10) == ([], b"\x00\x00")


def test_records_refuse_a_length_past_the_limit() -> None:
    with pytest.raises(ValueError, match="record of 11 bytes"):
        wire.records(struct.pack(">cI", b"X", 11), 10)


def test_request_encodes_every_part() -> None:
    msg = wire.request("key", 42, "ver=0x2;host=\udcff", ["-d", "42"])
    recs, rest = wire.records(msg, wire.REQUEST_MAX)
    assert rest == b""
    assert recs == [
        (b"V", b"1"),
        (b"M", b"key"),
        (b"S", b"42"),
        (b"D", b"ver=0x2;host=\xff"),
        (b"A", b"-d"),
        (b"A", b"42"),
    ]


def _full_reply() -> wire.Reply:
    r = wire.Reply()
    r.payload = b"\x00\x01payload"
    r.lines = [(6, "outcome=ok key=5", b"MESSAGE=x\n"), (7, "step=1 \u00e9", b"")]
    r.stdout = "hello\n"
    r.exit = 0
    r.negate_timeout = 9
    r.log_file = "/var/log/cifs.log"
    r.payload_out = "/tmp/p.bin"
    r.debug, r.echo = True, False
    return r


def test_reply_round_trip() -> None:
    r = _full_reply()
    recs, rest = wire.records(r.encode(), wire.REPLY_MAX)
    assert rest == b""
    back = wire.Reply.decode(recs)
    for name in wire.Reply.__slots__:
        assert getattr(back, name) == getattr(r, name), name


def test_default_reply_round_trip() -> None:
    back = wire.Reply.decode(wire.records(wire.Reply().encode(), wire.REPLY_MAX)[0])
    assert (back.payload, back.lines, back.stdout, back.exit) == (None, [], "", 1)
    assert (back.negate_timeout, back.log_file, back.payload_out) == (5, None, None)
    assert (back.debug, back.echo) == (False, False)


def test_reply_decode_needs_an_exit_status_and_numbers() -> None:
    with pytest.raises(ValueError, match="without an exit status"):
        wire.Reply.decode([(b"O", b"x")])
    with pytest.raises(ValueError):
        wire.Reply.decode([(b"X", b"zero")])
    with pytest.raises(ValueError):
        wire.Reply.decode([(b"L", b"six text"), (b"X", b"0")])


def test_reply_decode_ignores_unknown_tags_and_orphan_journal_entries() -> None:
    r = wire.Reply.decode([(b"J", b"orphan"), (b"Z", b"?"), (b"G", b"1"), (b"X", b"3")])
    assert r.lines == [] and r.exit == 3 and not r.debug


@pytest.mark.parametrize(
    ("description", "pid"),
    [(DESC + ";pid=0x1a2b", 0x1A2B), (DESC, None), (DESC + ";pid=zz", None), ("pid=10", 16)],
)
def test_pid_hint(description: str, pid: int | None) -> None:
    assert wire.pid_hint(description) == pid


# ---- the client's own argv reading -----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "mode"),
    [
        (["123"], "key"),
        (["-d", "--negate-timeout", "4", "123"], "key"),
        (["--dry-run", DESC], "dry"),
        (["--dry-run=" + DESC, "--json"], "dry"),
        ([], None),
        (["serve"], None),
        (["doctor"], None),
        (["explain", "x"], None),
        (["-h"], None),
        (["--help", "1"], None),
        (["-v"], None),
        (["--version", "12"], None),
        (["--no-daemon", "12"], None),
        (["abc"], None),
    ],
)
def test_mode(argv: list[str], mode: str | None) -> None:
    assert client._mode(argv) == mode


def test_flag_last_wins_and_both_forms() -> None:
    argv = ["--socket", "/a", "--socket=/b", "--deadline", "3"]
    assert client._flag(argv, "--socket") == "/b"
    assert client._flag(argv, "--deadline") == "3"
    assert client._flag(["--deadline"], "--deadline") is None  # no value follows
    assert client._flag(["--socketx=1"], "--socket") is None


@pytest.mark.parametrize("text", ["1", "2147483647", "0000000007"])
def test_parse_serial_accepts(text: str) -> None:
    assert client.parse_serial(text) == int(text)


@pytest.mark.parametrize("text", ["0", "2147483648", "-1", "+5", "12345678901", "١٢", "", "1e3"])
def test_parse_serial_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        client.parse_serial(text)


def test_clean_environment_keeps_only_a_safe_path() -> None:
    os.environ["KRB5CCNAME"] = "FILE:/tmp/evil"
    client.clean_environment()
    assert dict(os.environ) == {"PATH": client.SAFE_PATH}


# ---- apply --------------------------------------------------------------------------------------


def _reply(tmp_path: Path, **fields: Any) -> wire.Reply:
    r = wire.Reply()
    r.log_file = str(tmp_path / "log")
    for k, v in fields.items():
        setattr(r, k, v)
    return r


def test_apply_dry_writes_lines_stdout_and_payload_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keyctl: list[Any]
) -> None:
    out = tmp_path / "p.bin"
    r = _reply(
        tmp_path,
        lines=[(6, "outcome=ok", b""), (7, "step=debug-only", b"")],
        stdout="the trail\n",
        payload=b"secret",
        payload_out=str(out),
        exit=0,
    )
    assert client.apply(r, None) == 0
    assert capsys.readouterr().out == "the trail\n"
    assert out.read_bytes() == b"secret" and stat.S_IMODE(out.stat().st_mode) == 0o600
    text = (tmp_path / "log").read_text()
    assert "outcome=ok" in text and "step=debug-only" not in text  # not -d
    assert keyctl == [] and client.settled()


def test_apply_dry_returns_the_reply_exit(tmp_path: Path, keyctl: list[Any]) -> None:
    assert client.apply(_reply(tmp_path, exit=1), None) == 1
    assert keyctl == []


def test_apply_key_instantiates(tmp_path: Path, keyctl: list[Any]) -> None:
    assert client.apply(_reply(tmp_path, exit=0, payload=b"pl"), 77) == 0
    assert keyctl == [("instantiate", 77, b"pl")]


def test_apply_key_failure_negates_with_the_reply_timeout(
    tmp_path: Path, keyctl: list[Any]
) -> None:
    assert client.apply(_reply(tmp_path, exit=1, negate_timeout=3), 78) == 1
    assert keyctl == [("negate", 78, 3)]
    # exit 0 without a payload is not an answer either
    keyctl.clear()
    assert client.apply(_reply(tmp_path, exit=0), 79) == 1
    assert keyctl == [("negate", 79, 5)]


def test_apply_negates_when_writing_the_lines_crashes(
    tmp_path: Path, keyctl: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*a: object) -> None:
        raise RuntimeError("log broke")

    monkeypatch.setattr(log, "emit", boom)
    with pytest.raises(RuntimeError):
        client.apply(_reply(tmp_path, exit=0, payload=b"p", lines=[(6, "x", b"")]), 80)
    assert keyctl == [("negate", 80, 5)]


def test_apply_instantiate_failure_is_logged_and_negated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def inst(serial: int, payload: bytes) -> None:
        raise KeyringError(f"cannot instantiate key {serial}: Permission denied")

    def neg(serial: int, timeout: int) -> None:
        calls.append("negate")
        raise KeyringError(f"cannot negate key {serial}: Permission denied")

    monkeypatch.setattr(keyring, "instantiate", inst)
    monkeypatch.setattr(keyring, "negate", neg)
    r = _reply(tmp_path, exit=0, payload=b"p", debug=True)
    assert client.apply(r, 81) == 1
    assert calls == ["negate"]
    text = (tmp_path / "log").read_text()
    assert "outcome=failed key=81 reason=keyring-failed" in text
    assert 'key=81 error="cannot negate key 81: Permission denied"' in text  # debug line


def test_real_keyring_refuses_without_authority() -> None:
    with pytest.raises(KeyringError, match="cannot negate key"):
        keyring.negate(2**31 - 2, 1)
    with pytest.raises(KeyringError, match="cannot instantiate key"):
        keyring.instantiate(2**31 - 2, b"x")
    with pytest.raises(KeyringError) as ei:
        keyring.assume_authority(2**31 - 2)
    assert ei.value.reason is Reason.KEYRING and "request-key" in ei.value.hint


def test_write_atomic_never_follows_a_symlink(tmp_path: Path) -> None:
    from upcall.files import write_atomic

    target = tmp_path / "p"
    write_atomic(str(target), b"abc", 0o600)
    assert target.read_bytes() == b"abc" and stat.S_IMODE(target.stat().st_mode) == 0o600
    write_atomic(str(target), b"new", 0o600)  # replaced whole
    assert target.read_bytes() == b"new"
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "q").symlink_to(victim)  # a planted link at the target is replaced, not followed
    write_atomic(str(tmp_path / "q"), b"x", 0o600)
    assert victim.read_text() == "keep" and (tmp_path / "q").read_bytes() == b"x"


# ---- the conversation with a daemon ------------------------------------------------------------


class FakeDaemon:
    """Accepts one connection on a tmp socket and answers with `answer(request bytes)`."""

    def __init__(self, path: str, answer: Callable[[bytes, list[int]], bytes | None]) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.answer = answer
        self.request = b""
        self.fds: list[int] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            while True:
                data, anc, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(4))
                for _lvl, _kind, payload in anc:
                    self.fds.extend(struct.unpack(f"{len(payload) // 4}i", payload))
                if not data:
                    break
                self.request += data
            out = self.answer(self.request, self.fds)
            if out is not None:
                try:
                    conn.sendall(out)
                    conn.shutdown(socket.SHUT_WR)
                    conn.recv(1)  # until the client closes
                except OSError:
                    pass  # the client hung up early (a refused reply)

    def close(self) -> None:
        self.thread.join(10)
        self.sock.close()
        for fd in self.fds:
            os.close(fd)


def _answer_ok(req: bytes, fds: list[int]) -> bytes:
    r = wire.Reply()
    r.stdout, r.exit = "from the daemon\n", 0
    return wire.record(b"K", b"") + r.encode()


def _ask_daemon(mode: str, serial: int, text: str, argv: list[str]) -> tuple[object, str]:
    """(Reply, "") from the daemon, or (None, why not): the client's _connect, then _exchange,
    as run() does them."""
    conn, why = client._connect(argv)
    if conn is None:
        return None, why
    try:
        return client._exchange(conn, mode, serial, text, argv)
    finally:
        conn.close()


def test_ask_daemon_sends_the_request_and_decodes_the_reply(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    d = FakeDaemon(path, _answer_ok)
    argv = ["--socket", path, "--dry-run", DESC]
    try:
        reply, why = _ask_daemon("dry", 0, DESC, argv)
    finally:
        d.close()
    assert why == "" and isinstance(reply, wire.Reply)
    assert reply.stdout == "from the daemon\n" and reply.exit == 0
    recs, _ = wire.records(d.request, wire.REQUEST_MAX)
    assert (b"M", b"dry") in recs and (b"D", DESC.encode()) in recs
    assert [v for t, v in recs if t == b"A"] == [a.encode() for a in argv]
    assert d.fds == []  # no pid=: nothing pinned


def test_ask_daemon_passes_the_pinned_caller(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    d = FakeDaemon(path, _answer_ok)
    text = f"{DESC};pid={os.getpid():#x}"
    try:
        reply, _ = _ask_daemon("dry", 0, text, ["--socket", path])
    finally:
        d.thread.join(10)
    assert isinstance(reply, wire.Reply)
    assert len(d.fds) == 1
    from upcall.caller.pidpin import fd_pid

    assert fd_pid(d.fds[0]) == os.getpid()
    d.close()


def test_run_connects_first_and_assumes_authority_off_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon hands the connection to a handler while the client describes the key:
    connect comes first. Assuming authority (request-key did already) comes after the request
    is built and sent, while the daemon works."""
    import keyutils

    from upcall.kernel import _keyctl

    path = str(tmp_path / "s")
    d = FakeDaemon(path, _answer_ok)
    order: list[str] = []
    connect, request = client._connect, wire.request

    def noted(what: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*a: Any) -> Any:
            order.append(what)
            return fn(*a)

        return call

    monkeypatch.setattr(client, "_connect", noted("connect", connect))
    monkeypatch.setattr(wire, "request", noted("request", request))
    described = b"cifs.spnego;0;0;3f010000;" + DESC.encode()
    # FAKES: no key is under construction in a unit test
    monkeypatch.setattr(_keyctl, "assume_authority", noted("authority", lambda serial: None))
    monkeypatch.setattr(keyutils, "describe_key", noted("describe", lambda serial: described))
    monkeypatch.setattr(client, "apply", lambda reply, serial: 0)
    try:
        assert client.run("key", 77, ["--socket", path, "77"]) == 0
    finally:
        d.close()
    assert order == ["connect", "describe", "request", "authority"]
    recs, _ = wire.records(d.request, wire.REQUEST_MAX)
    assert (b"S", b"77") in recs


def test_a_failed_assume_authority_is_left_to_instantiate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not run by request-key: the repeat of request-key's assume_authority fails quietly;
    the reply is still carried out (and instantiate reports the missing authority)."""
    import keyutils

    from upcall.kernel import _keyctl

    path = str(tmp_path / "s")
    d = FakeDaemon(path, _answer_ok)

    def refuse(serial: int) -> None:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(_keyctl, "assume_authority", refuse)  # FAKE
    monkeypatch.setattr(
        keyutils, "describe_key", lambda serial: b"cifs.spnego;0;0;3f010000;" + DESC.encode()
    )  # FAKE
    applied: list[int | None] = []

    def apply(reply: object, serial: int | None) -> int:
        applied.append(serial)
        return 0

    monkeypatch.setattr(client, "apply", apply)
    try:
        assert client.run("key", 78, ["--socket", path, "78"]) == 0
    finally:
        d.close()
    assert applied == [78]


def test_ask_daemon_without_a_daemon(tmp_path: Path) -> None:
    path = str(tmp_path / "none")
    reply, why = _ask_daemon("dry", 0, DESC, ["--socket", path])
    assert reply is None and why.startswith(f"no daemon at {path}: ")


def test_ask_daemon_refuses_a_reply_without_exit(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    d = FakeDaemon(path, lambda req, fds: wire.record(b"K", b"") + wire.record(b"O", b"x"))
    try:
        reply, why = _ask_daemon("dry", 0, DESC, ["--socket", path])
    finally:
        d.close()
    assert reply is None and why == f"daemon at {path}: reply without an exit status"


def test_ask_daemon_refuses_an_oversized_reply(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    big = wire.record(b"K", b"") + wire.record(b"O", b"x" * wire.REPLY_MAX)
    d = FakeDaemon(path, lambda req, fds: big)
    try:
        reply, why = _ask_daemon("dry", 0, DESC, ["--socket", path])
    finally:
        d.close()
    assert reply is None and why == f"daemon at {path}: reply too large"


def test_ask_daemon_raises_on_a_record_over_the_limit(tmp_path: Path) -> None:
    """A record header past REPLY_MAX raises (run() catches it and works in-process)."""
    path = str(tmp_path / "s")
    head = struct.pack(">cI", b"O", wire.REPLY_MAX + 1)
    d = FakeDaemon(path, lambda req, fds: head)
    try:
        with pytest.raises(ValueError, match="limit"):
            _ask_daemon("dry", 0, DESC, ["--socket", path])
    finally:
        d.close()


def test_ask_daemon_gives_up_without_acceptance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "ACK_BOUND", 0.2)
    path = str(tmp_path / "s")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)  # never accepts, never answers
    try:
        reply, why = _ask_daemon("dry", 0, DESC, ["--socket", path])
    finally:
        srv.close()
    assert reply is None and why == f"daemon at {path}: no acceptance in time"


def test_pin_of_missing_or_gone_caller_is_minus_one() -> None:
    assert client._pin(DESC) == -1
    assert client._pin(DESC + ";pid=0x3ffffffe") == -1
    fd = client._pin(f"{DESC};pid={os.getpid():#x}")
    try:
        assert fd >= 0
    finally:
        os.close(fd)


# ---- run / main: daemon or in-process ------------------------------------------------------


@pytest.fixture
def fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> list[Request]:
    """run_upcall that fails without touching credentials, recording its requests."""
    seen: list[Request] = []

    def run_upcall(req: Request, opts: pipeline.Options, **kw: object) -> pipeline.Outcome:
        seen.append(req)
        return pipeline.Outcome(
            ok=False,
            request=req,
            uid=req.credential_uid(),
            reason=Reason.NO_CREDENTIALS,
            message="no tickets",
            hint="run kinit",
        )

    monkeypatch.setattr(pipeline, "run_upcall", run_upcall)
    return seen


def test_dry_run_without_daemon_works_in_process(
    tmp_path: Path, fake_pipeline: list[Request], capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "log"
    argv = ["--socket", str(tmp_path / "none"), "--log-file", str(log_file), "--dry-run", DESC]
    assert client.main(argv) == 1
    assert [r.host for r in fake_pipeline] == ["fs1.lab.test"]
    out = capsys.readouterr().out
    assert "outcome=failed reason=no-credentials" in out
    text = log_file.read_text()
    assert 'via="in-process (no daemon at ' in text


def test_dry_run_through_a_daemon_applies_its_reply(
    tmp_path: Path, fake_pipeline: list[Request], capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "s")
    d = FakeDaemon(path, _answer_ok)
    try:
        assert client.main(["--socket", path, "--dry-run", DESC]) == 0
    finally:
        d.close()
    assert capsys.readouterr().out == "from the daemon\n"
    assert fake_pipeline == []  # the daemon answered


def test_key_mode_without_authority_falls_back_and_refuses(
    tmp_path: Path, keyctl: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not started by request-key: describing the key fails in the client, then in-process the
    key is refused (key-unavailable or keyring-failed) and negated."""
    log_file = tmp_path / "log"
    monkeypatch.setattr(keyring, "assume_authority", lambda s: None)
    rc = client.main(["--log-file", str(log_file), "--socket", str(tmp_path / "x"), "2147483000"])
    assert rc == 1
    assert keyctl == [("negate", 2147483000, 5)]
    text = log_file.read_text()
    assert "outcome=refused key=2147483000 reason=key-unavailable" in text


def test_key_mode_with_a_bad_serial_goes_to_the_full_parser(
    tmp_path: Path, keyctl: list[Any]
) -> None:
    log_file = tmp_path / "log"
    with pytest.raises(SystemExit) as ei:
        client.main(["--log-file", str(log_file), "99999999999"])
    assert ei.value.code == 1
    assert "outcome=refused error=\"key serial '99999999999' is not a positive" in (
        log_file.read_text()
    )
    assert keyctl == []


def test_client_main_routes_version_to_the_full_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from upcall import __version__

    assert client.main(["--version"]) == 0
    assert capsys.readouterr().out == f"version: {__version__}\n"


def test_client_main_turns_an_import_error_into_a_startup_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(args: list[str]) -> int:
        raise ImportError("No module named 'keyutils'")

    monkeypatch.setattr(client, "_main", broken)
    log_file = tmp_path / "log"
    assert client.main(["--log-file", str(log_file), "--dry-run", DESC]) == 1
    text = log_file.read_text()
    assert "reason=internal-error" in text and "cannot start: ImportError" in text
