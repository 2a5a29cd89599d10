"""respond.py and cli.py: the summary line, dry_reply and key_reply with a fake pipeline, the
bad-arguments path (exit 2, one line, a short negative key), start-up options, --version."""

from __future__ import annotations

import json
import syslog
from pathlib import Path
from typing import Any

import pytest

from upcall import cli, pipeline, respond
from upcall.errors import KeyUnavailable, Reason
from upcall.kernel import keyring
from upcall.kernel.request import Request, parse_description
from upcall.sources.base import Attempt, SourceKind, SourceToken

DESC = "ver=0x2;host=fs1.lab.test;ip4=192.0.2.10;sec=krb5;uid=0x3e8;creduid=0x3e8;pid=0x99"
KERNEL_KEY = f"cifs.spnego;0;0;39010000;{DESC}"


def _outcome(req: Request, ok: bool) -> pipeline.Outcome:
    trail = [Attempt("policy", "note", "defaults: try local")]
    if ok:
        tok = SourceToken(
            SourceKind.PROXY, b"tok", bytes(16), 18, "bob@LAB.TEST", "cifs/fs1@LAB.TEST", True
        )
        return pipeline.Outcome(
            True, req, 1000, token=tok, payload=b"PAYLOAD", trail=trail, seconds=0.0123
        )
    return pipeline.Outcome(
        False, req, 1000, Reason.KDC_UNREACHABLE, "KDC down", "check the KDC", trail=trail
    )


class FakePipeline:
    def __init__(self, ok: bool) -> None:
        self.ok = ok
        self.calls: list[tuple[Request, pipeline.Options, dict[str, Any]]] = []

    def __call__(self, req: Request, opts: pipeline.Options, **kw: Any) -> pipeline.Outcome:
        self.calls.append((req, opts, kw))
        return _outcome(req, self.ok)


@pytest.fixture
def ok_pipeline(monkeypatch: pytest.MonkeyPatch) -> FakePipeline:
    fake = FakePipeline(True)
    monkeypatch.setattr(pipeline, "run_upcall", fake)
    return fake


@pytest.fixture
def failing_pipeline(monkeypatch: pytest.MonkeyPatch) -> FakePipeline:
    fake = FakePipeline(False)
    monkeypatch.setattr(pipeline, "run_upcall", fake)
    return fake


# ---- summary lines -------------------------------------------------------------------------


def test_summary_ok_line() -> None:
    line = respond.summary(_outcome(parse_description(DESC), True), 12, "daemon")
    assert line == (
        "outcome=ok source=proxy principal=bob@LAB.TEST spn=cifs/fs1@LAB.TEST impersonated=yes "
        "key=12 host=fs1.lab.test sec=krb5 uid=1000 pid=153 target=unspecified ms=12 via=daemon"
    )


def test_summary_failed_line_quotes_and_drops_none() -> None:
    line = respond.summary(_outcome(parse_description(DESC), False), None, "in-process")
    assert line == (
        "outcome=failed reason=kdc-unreachable host=fs1.lab.test sec=krb5 uid=1000 pid=153 "
        'target=unspecified ms=0 via=in-process error="KDC down" hint="check the KDC"'
    )


def test_options_follow_the_arguments() -> None:
    a = cli.parse_args(
        ["-k", "/k5", "-K", "/kt", "-l", "-t", "-E", "--deadline", "4.5", "--policy", "/p",
         "--host-krb5-config", "/h5", "1"]
    )  # fmt: skip
    o = respond.options(a)
    assert o == pipeline.Options(
        krb5_config="/k5", keytab="/kt", legacy_uid=True, trust_dns=True, env_probe=False,
        deadline=4.5, policy_path="/p", host_krb5_config="/h5",
    )  # fmt: skip


# ---- dry_reply ---------------------------------------------------------------------------


def _args(*extra: str) -> Any:
    return cli.parse_args(["--dry-run", "x", *extra])


def test_dry_reply_text_output(ok_pipeline: FakePipeline) -> None:
    r, out = respond.dry_reply(DESC, _args("--negate-timeout", "7"), None, "daemon")
    assert out is not None and out.ok and r.exit == 0 and r.payload == b"PAYLOAD"
    assert r.negate_timeout == 7
    rows = r.stdout.splitlines()
    assert rows[0] == "  policy     note    defaults: try local"
    assert rows[1].startswith("outcome=ok source=proxy")
    assert [p for p, _, _ in r.lines] == [syslog.LOG_INFO]  # the trail's lines need -d
    assert r.lines[-1][2] and b"CIFS_UPCALL_OUTCOME=ok" in r.lines[-1][2]
    assert ok_pipeline.calls[0][2] == {"pidfd": None, "cache": None, "workers": None}


def test_dry_reply_json_output(failing_pipeline: FakePipeline, tmp_path: Path) -> None:
    a = _args("--json", "--payload-out", str(tmp_path / "p"), "-d")
    r, _ = respond.dry_reply(DESC, a, 5, "in-process")
    doc = json.loads(r.stdout)
    assert r.exit == 1 and r.echo and r.debug and r.payload_out == str(tmp_path / "p")
    assert doc["outcome"] == "failed" and doc["reason"] == "kdc-unreachable"
    assert doc["source"] is None and doc["enctype"] is None and doc["payload_len"] is None
    assert doc["trail"] == [Attempt("policy", "note", "defaults: try local").as_dict()]
    assert failing_pipeline.calls[0][2]["pidfd"] == 5
    assert [p for p, _, _ in r.lines] == [syslog.LOG_DEBUG, syslog.LOG_ERR]  # -d: the trail


def test_dry_reply_json_ok_fields(ok_pipeline: FakePipeline) -> None:
    r, _ = respond.dry_reply(DESC, _args("--json"), None, "daemon")
    doc = json.loads(r.stdout)
    assert (doc["source"], doc["principal"], doc["impersonated"]) == ("proxy", "bob@LAB.TEST", True)
    assert (doc["enctype"], doc["session_key_len"], doc["payload_len"]) == (18, 16, 7)
    assert doc["seconds"] == 0.0123


def test_dry_reply_accepts_a_whole_describe_string(ok_pipeline: FakePipeline) -> None:
    _, out = respond.dry_reply(KERNEL_KEY, _args(), None, "daemon")
    assert out is not None and ok_pipeline.calls[0][0].host == "fs1.lab.test"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("cifs.spnego;1000;1000;3f010000;" + DESC, "foreign-key"),
        ("ver=0x2;host=fs1", "bad-description"),
        ("ver=0x9;host=h;sec=krb5;uid=0x1", "unsupported-version"),
    ],
)
def test_dry_reply_refusals_never_run_the_pipeline(
    ok_pipeline: FakePipeline, text: str, reason: str
) -> None:
    r, out = respond.dry_reply(text, _args(), None, "daemon")
    assert out is None and ok_pipeline.calls == [] and r.exit == 1
    assert r.stdout.startswith(f"refused: {reason}: ")
    r, _ = respond.dry_reply(text, _args("--json"), None, "daemon")
    doc = json.loads(r.stdout)
    assert doc["outcome"] == "failed" and doc["reason"] == reason and doc["trail"] == []


# ---- key_reply ---------------------------------------------------------------------------


def test_key_reply_ok_carries_the_payload(ok_pipeline: FakePipeline) -> None:
    r, out = respond.key_reply(41, KERNEL_KEY, cli.parse_args(["41"]), 9, "daemon")
    assert out is not None and r.exit == 0 and r.payload == b"PAYLOAD"
    assert "key=41" in r.lines[-1][1] and ok_pipeline.calls[0][2]["pidfd"] == 9


def test_key_reply_failure_exits_1_without_payload(failing_pipeline: FakePipeline) -> None:
    r, out = respond.key_reply(41, KERNEL_KEY, cli.parse_args(["41"]), None, "daemon")
    assert out is not None and r.exit == 1 and r.payload is None
    assert r.lines[-1][0] == syslog.LOG_ERR and "reason=kdc-unreachable" in r.lines[-1][1]


def test_key_reply_refuses_a_user_made_key(ok_pipeline: FakePipeline) -> None:
    forged = f"cifs.spnego;1000;1000;3f010000;{DESC}"
    r, out = respond.key_reply(41, forged, cli.parse_args(["41"]), None, "daemon")
    assert out is None and ok_pipeline.calls == [] and r.exit == 1 and r.payload is None
    prio, line, entry = r.lines[0]
    assert prio == syslog.LOG_ERR
    assert line.startswith("outcome=refused key=41 reason=foreign-key via=daemon")
    assert b"CIFS_UPCALL_REASON=foreign-key" in entry


def test_refused_and_bad_arguments_lines() -> None:
    prio, line, _ = respond.refused(KeyUnavailable("gone"), 3, "daemon")
    assert prio == syslog.LOG_ERR and "reason=key-unavailable" in line and "via=daemon" in line
    r = respond.bad_arguments(8, "unrecognized arguments: --x", ["--negate-timeout", "2", "8"])
    assert r.exit == 2 and r.negate_timeout == 2 and r.payload is None
    assert "outcome=refused key=8 reason=bad-arguments negate_timeout=2" in r.lines[0][1]


# ---- cli ---------------------------------------------------------------------------------


def test_argument_errors() -> None:
    assert cli.argument_errors(["-d", "5"]) is None
    why = cli.argument_errors(["--bogus", "5"])
    assert why is not None and "--bogus" in why
    why = cli.argument_errors(["--deadline", "soon", "5"])
    assert why is not None and "--deadline" in why


def test_parse_args_defaults() -> None:
    a = cli.parse_args(["123"])
    assert (a.serial, a.negate_timeout, a.deadline, a.debug, a.dry_run) == (
        "123", 5, 10.0, False, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "serial"),
    [
        (["--x", "12"], 12),
        (["12", "--x"], 12),
        (["--x"], None),
        (["0"], None),
        (["2147483648"], None),
    ],
)
def test_startup_serial(argv: list[str], serial: int | None) -> None:
    assert cli.startup_serial(argv) == serial


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["--negate-timeout", "3", "--log-file", "/l", "--x", "1"], (3, "/l")),
        (["--negate-timeout", "soon", "1"], (5, None)),
        (["--negate-timeout", "-4", "1"], (5, None)),
        ([], (5, None)),
    ],
)
def test_startup_options(argv: list[str], expect: tuple[int, str | None]) -> None:
    assert cli.startup_options(argv) == expect


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from upcall import __version__

    assert cli.main(["-v"]) == 0
    assert capsys.readouterr().out == f"version: {__version__}\n"


def test_bad_arguments_exit_2_one_line_and_a_short_negative_key(
    tmp_path: Path, keyctl: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "log"
    argv = ["--log-file", str(log_file), "--negate-timeout", "2", "--frobnicate", "1234"]
    assert cli.main(argv) == 2
    assert keyctl == [("negate", 1234, 2)]
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1 and "reason=bad-arguments" in lines[0]
    assert "unrecognized arguments: --frobnicate" in capsys.readouterr().err


def test_bad_arguments_in_process_dry_mode_negates_nothing(
    tmp_path: Path, keyctl: list[Any]
) -> None:
    log_file = tmp_path / "log"
    rc = cli.in_process("dry", 0, ["--log-file", str(log_file), "--dry-run", DESC, "--zz"], "x")
    assert rc == 2 and keyctl == []
    assert "key=" not in log_file.read_text().split("reason=")[0]


def test_in_process_dry_and_key(
    tmp_path: Path,
    keyctl: list[Any],
    ok_pipeline: FakePipeline,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.in_process("dry", 0, ["--dry-run", DESC], "in-process (test)") == 0
    assert "outcome=ok" in capsys.readouterr().out
    monkeypatch.setattr(keyring, "assume_authority", lambda s: None)
    monkeypatch.setattr(keyring, "describe_raw", lambda s: KERNEL_KEY)
    assert cli.in_process("key", 55, ["55"], "in-process (test)") == 0
    assert keyctl == [("instantiate", 55, b"PAYLOAD")]


def test_handle_key_refusal_negates(
    tmp_path: Path, keyctl: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def gone(serial: int) -> str:
        raise KeyUnavailable(f"cannot describe key {serial}: Key has expired")

    monkeypatch.setattr(keyring, "assume_authority", lambda s: None)
    monkeypatch.setattr(keyring, "describe_raw", gone)
    log_file = tmp_path / "log"
    rc = cli.main(["--log-file", str(log_file), "--negate-timeout", "1", "56"])
    assert rc == 1 and keyctl == [("negate", 56, 1)]
    assert "outcome=refused key=56 reason=key-unavailable" in log_file.read_text()


def test_main_dry_run(ok_pipeline: FakePipeline, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--dry-run", DESC, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "ok"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--json", "5"], "--payload-out and --json go with --dry-run"),
        ([], "missing key serial"),
        (["-d"], "missing key serial"),
        (["0"], "out of range"),
    ],
)
def test_main_refusals_exit_1(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ei:
        cli.main(argv)
    assert ei.value.code == 1
    assert error in capsys.readouterr().err


def test_startup_failure_without_serial_logs_and_returns_1(
    tmp_path: Path, keyctl: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "log"
    rc = cli.startup_failure(["--log-file", str(log_file)], "internal-error", "boom", "fix it")
    assert rc == 1 and keyctl == []
    assert 'reason=internal-error negate_timeout=5 error=boom hint="fix it"' in (
        log_file.read_text()
    )
    assert "cifs-upcall: boom" in capsys.readouterr().err


def test_negate_bare_without_authority_logs_and_does_not_raise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    said: list[str] = []
    monkeypatch.setattr(cli.syslog, "syslog", lambda prio, msg: said.append(msg))
    cli._negate_bare(2**31 - 3, 1)
    assert len(said) == 1 and said[0].startswith(f'key={2**31 - 3} error="cannot negate key: ')
