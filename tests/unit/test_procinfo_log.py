"""The caller's /proc entry read from our own process and a thread of it (pin, thread_group,
fd_pid, ns_inodes, read_caller), whom a worker becomes (identity, namespaces), the log sink
(escape, kv, a --log-file, journald on a tmp datagram socket), the policy file's trust checks,
and the SPN loop every source shares (with a fake gss.initiate)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from upcall import log
from upcall.caller import namespaces, pidpin, procinfo
from upcall.caller.identity import NOGROUP, Identity, for_caller, resolve, target
from upcall.caller.procinfo import IdMap
from upcall.errors import (
    BadPolicy,
    CallerGone,
    CredentialError,
    PrivilegeDropError,
    Reason,
)
from upcall.kernel.request import parse_description
from upcall.krb5 import gss
from upcall.krb5.spn import SpnCandidate
from upcall.pipeline import Outcome
from upcall.policy import file as policy_file
from upcall.policy.rules import Policy
from upcall.sources.base import Attempt, SourceKind
from upcall.sources.spn_attempts import first_token


def _gone_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


# ---- pidpin ----------------------------------------------------------------------------------


def test_pin_our_process() -> None:
    fd, tgid = pidpin.pin(os.getpid())
    try:
        assert tgid == os.getpid() and pidpin.fd_pid(fd) == os.getpid()
    finally:
        os.close(fd)


def test_pin_a_thread_resolves_to_its_process(thread_id: int) -> None:
    assert thread_id != os.getpid()
    assert pidpin.thread_group(thread_id) == os.getpid()
    fd, tgid = pidpin.pin(thread_id)
    try:
        assert tgid == os.getpid()
    finally:
        os.close(fd)


def test_pin_a_gone_process_fails() -> None:
    pid = _gone_pid()
    with pytest.raises(pidpin.PinError, match=f"caller pid {pid} does not exist"):
        pidpin.pin(pid)


def test_fd_pid_of_something_else_fails() -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(pidpin.PinError, match=f"fd {r} is not a pidfd"):
            pidpin.fd_pid(r)
    finally:
        os.close(r)
        os.close(w)


# ---- procinfo --------------------------------------------------------------------------------


def test_ns_inodes_of_self() -> None:
    ours = procinfo.ns_inodes("self")
    assert {"mnt", "net", "user", "pid"} <= set(ours)
    assert ours["mnt"] == os.stat("/proc/self/ns/mnt").st_ino
    assert procinfo.ns_inodes(os.getpid()) == ours


def test_read_caller_of_our_own_process() -> None:
    c = procinfo.read_caller(os.getpid(), want_environ=True)
    try:
        assert (c.pid, c.uid, c.gid, c.thread) == (os.getpid(), os.getuid(), os.getgid(), None)
        assert c.environ is not None and c.environ_note == ""
        assert c.ns_inodes == procinfo.ns_inodes("self")
        assert c.uid_map.to_inside(os.getuid()) is not None
        assert pidpin.fd_pid(c.pidfd) == os.getpid()
    finally:
        os.close(c.pidfd)


def test_read_caller_with_a_given_pin_of_a_thread(thread_id: int) -> None:
    given, _ = pidpin.pin(os.getpid())
    try:
        c = procinfo.read_caller(thread_id, want_environ=False, pidfd=given)
        try:
            assert c.pidfd != given and c.thread == thread_id and c.pid == os.getpid()
            assert c.environ is None and c.environ_note == "not probed"
        finally:
            os.close(c.pidfd)
    finally:
        os.close(given)


def test_read_caller_refuses_a_pin_of_another_process() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    other = os.pidfd_open(pid)
    try:
        with pytest.raises(CallerGone, match=f"the pinned caller is pid {pid}"):
            procinfo.read_caller(os.getpid(), want_environ=False, pidfd=other)
    finally:
        os.close(other)
        os.close(w)
        os.waitpid(pid, 0)


def test_read_caller_of_a_gone_process() -> None:
    with pytest.raises(CallerGone):
        procinfo.read_caller(_gone_pid(), want_environ=True)


def test_read_environ_limit_and_unreadable() -> None:
    data, note = procinfo.read_environ(os.getpid(), limit=1)
    assert data is None and note == "environ is larger than 1 bytes"
    data, note = procinfo.read_environ(_gone_pid())
    assert data is None and note.startswith("environ unreadable: ")


def test_ids_from_status() -> None:
    assert procinfo._ids({"Uid": "5 5 5 5", "Gid": "7 7 7 7"}, 1) == (5, 7)
    with pytest.raises(CallerGone, match="unreadable status"):
        procinfo._ids({"Uid": ""}, 1)


def test_idmap_parse_and_translate() -> None:
    m = IdMap.parse("         0     100000      65536\n  garbage\n")
    assert m.ranges == ((0, 100000, 65536),)
    assert m.to_inside(100005) == 5 and m.to_inside(99999) is None
    assert m.to_inside(165536) is None


# ---- identity and namespaces -----------------------------------------------------------------


def test_resolve_known_and_unknown_uids() -> None:
    import pwd

    me = resolve(os.getuid(), None, None)
    assert me.name == pwd.getpwuid(os.getuid()).pw_name
    assert resolve(4000123, 4000123, 777) == Identity(4000123, 777, None)
    assert resolve(4000123, 5, 777) == Identity(4000123, NOGROUP, None)


def test_for_caller_gives_what_resolve_with_the_caller_gives() -> None:
    """The pipeline resolves before it reads the caller, then applies the caller's ids
    without a second NSS look-up: the same identity either way."""
    for uid, cuid, cgid in [(os.getuid(), os.getuid(), 777), (4000123, 4000123, 777),
                            (4000123, 5, 777), (0, 0, 5), (4000123, None, None)]:  # fmt: skip
        assert for_caller(resolve(uid, None, None), cuid, cgid) == resolve(uid, cuid, cgid)


def test_target_through_id_maps() -> None:
    ident = Identity(100005, 100007, "u")
    m = IdMap(((0, 100000, 65536),))
    assert (target(ident, m, m).uid, target(ident, m, m).gid) == (5, 7)
    assert target(ident).uid == 100005
    with pytest.raises(PrivilegeDropError, match="not mapped in the caller's user namespace"):
        target(Identity(5, 5, None), m, m)


def test_namespace_plan_and_flags() -> None:
    ours = {"mnt": 1, "user": 2, "net": 3}
    p = namespaces.plan(ours, {"mnt": 9, "user": 2, "net": 8, "time": 4})
    assert p.enter == ("net", "time", "mnt") and not p.changes_user
    assert p.flags == 0x40000000 | 0x00000080 | 0x00020000
    q = namespaces.plan(ours, {"user": 5})
    assert q.changes_user and q.flags == 0x10000000
    assert namespaces.plan(ours, ours).flags == 0


# ---- log -------------------------------------------------------------------------------------


@pytest.fixture
def quiet_log() -> Iterator[None]:
    yield
    log.setup(debug=False, echo=False)


def test_escape_and_kv() -> None:
    assert log.escape("plain") == "plain"
    assert log.escape("a\nb\x00c\u2028d\x9b\U0001f600") == "a\\x0ab\\x00c\\u2028d\\x9b\U0001f600"
    assert log.escape("\U000e0001") == "\\U000e0001"
    assert log.kv(a=1, b=None, c="two words", d="", e='q"=') == ('a=1 c="two words" d="" e="q\\"="')
    assert log.kv(x="new\nline") == 'x="new\\x0aline"'


def test_emit_to_a_log_file_with_debug_filter(tmp_path: Path, quiet_log: None) -> None:
    f = tmp_path / "log"
    log.setup(debug=False, echo=False, log_file=str(f), journal_socket=str(tmp_path / "none"))
    log.emit(6, "info line")
    log.emit(7, "debug line")
    log.emit(3, "bad\x00byte")
    lines = f.read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(f"cifs-upcall[{os.getpid()}]: info line")
    assert lines[1].endswith("bad\\x00byte")
    log.setup(debug=True, echo=False, log_file=str(f), journal_socket=str(tmp_path / "none"))
    log.emit(7, "debug line")
    assert f.read_text().splitlines()[-1].endswith("debug line")


def test_emit_never_writes_through_a_symlink(tmp_path: Path, quiet_log: None) -> None:
    victim = tmp_path / "victim"
    victim.write_text("")
    link = tmp_path / "log"
    link.symlink_to(victim)
    log.setup(debug=False, echo=False, log_file=str(link))
    log.emit(6, "x")  # refused silently: logging never raises
    log.setup(debug=False, echo=False, log_file=str(tmp_path / "no" / "dir"))
    log.emit(6, "x")
    assert victim.read_text() == ""


def test_emit_echo_to_stderr(quiet_log: None, capsys: pytest.CaptureFixture[str]) -> None:
    log.setup(debug=True, echo=True)
    log.emit(7, "to\tstderr")
    assert capsys.readouterr().err == "cifs-upcall: to\\x09stderr\n"  # a tab is escaped too


def test_emit_sends_the_entry_to_journald(tmp_path: Path, quiet_log: None) -> None:
    path = str(tmp_path / "journal")
    j = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    j.bind(path)
    f = tmp_path / "log"
    with j:
        j.settimeout(5)
        log.setup(debug=False, echo=False, log_file=str(f), journal_socket=path)
        log.emit(6, "line", b"MESSAGE=line\n")
        assert j.recv(65536) == b"MESSAGE=line\n"
        log.emit(7, "debug", b"MESSAGE=debug\n")  # below the mask: not to journald
        j.settimeout(0.05)
        with pytest.raises(TimeoutError):
            j.recv(65536)
    assert "line" in f.read_text()  # the file still gets it


def test_emit_falls_back_when_journald_does_not_listen(tmp_path: Path, quiet_log: None) -> None:
    path = str(tmp_path / "journal")
    j = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    j.bind(path)
    log.setup(debug=False, echo=False, journal_socket=path)
    j.close()  # the socket file stays, nobody reads it
    assert log._to_journal(b"MESSAGE=x\n", path) is False
    log.emit(6, "line", b"MESSAGE=line\n")  # to syslog instead, without raising


def test_outcome_logs_trail_and_summary(tmp_path: Path, quiet_log: None) -> None:
    from upcall import respond

    f = tmp_path / "log"
    log.setup(debug=True, echo=False, log_file=str(f), journal_socket=str(tmp_path / "none"))
    req = parse_description("ver=0x2;host=h1;sec=krb5;uid=0x1;creduid=0x1")
    out = Outcome(False, req, 1, Reason.CALLER_GONE, "gone", "retry")
    out.trail.append(Attempt("local", "left", "caller-gone: gone", "caller-gone"))
    for prio, line, entry in respond._outcome_lines(out, 9, "in-process", True):
        log.emit(prio, line, entry)
    lines = f.read_text().splitlines()
    assert lines[0].endswith('source=local outcome=left detail="caller-gone: gone" '
                             "reason=caller-gone")  # fmt: skip
    assert "outcome=failed reason=caller-gone key=9 host=h1" in lines[1]
    # without --debug the trail is not even made (emit would drop it): the summary alone
    quiet = respond._outcome_lines(out, 9, "in-process", False)
    assert [(p, line) for p, line, _ in quiet] == [(3, lines[1].split(": ", 1)[1])]


# ---- policy_file trust -----------------------------------------------------------------------


def test_missing_default_policy_means_built_in_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy_file, "DEFAULT_PATH", "/nonexistent/cifs-upcall/policy.yaml")
    assert policy_file.load(None) == Policy()


def test_policy_others_could_write_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "policy.yaml"
    p.write_text("defaults: {}\n")
    p.chmod(0o666)
    with pytest.raises(BadPolicy) as ei:
        policy_file.load(str(p))
    # as root: world-writable; as anyone else: not root's
    assert "group- or world-writable" in ei.value.message or "not root" in ei.value.message


def test_unreachable_policy_is_bad_policy(tmp_path: Path) -> None:
    with pytest.raises(BadPolicy):
        policy_file.load("/proc/1/root/etc/cifs-upcall/policy.yaml")


def test_read_trusted_root_files() -> None:
    """Root-owned system files have a trusted chain whoever reads them."""
    assert policy_file.read_trusted("/etc/hostname") == Path("/etc/hostname").read_text()
    with pytest.raises(BadPolicy, match="not UTF-8"):
        policy_file.read_trusted("/usr/bin/true")
    with pytest.raises(BadPolicy, match="not a regular root-owned"):
        policy_file.read_trusted("/etc")


def test_policy_parse_errors_name_the_file() -> None:
    with pytest.raises(BadPolicy) as ei:
        policy_file.parse("defaults:\n  mdoe: local-only\n", "/etc/p.yaml")
    assert "/etc/p.yaml:2" in ei.value.message


# ---- the SPN loop with a fake GSS ------------------------------------------------------------


def _spns() -> list[SpnCandidate]:
    return [SpnCandidate("cifs", "fs1", "as given"), SpnCandidate("CIFS", "fs1", "upper case")]


class _RawGssError:
    """Stands in for a gssapi error: the source's translate classifies it (once)."""

    def __init__(self, reason: Reason):
        self.reason = reason


def _translate(e: _RawGssError, spn: SpnCandidate) -> tuple[str, CredentialError]:
    err = CredentialError("server not found", hint="hint", reason=e.reason)
    return f"{spn.principal}: {err.message}", err


def _failure(reason: Reason, spn: SpnCandidate | None = None) -> gss.InitFailure:
    return gss.InitFailure(_RawGssError(reason), spn or _spns()[0])  # type: ignore[arg-type]


def test_first_token_tries_the_next_name_only_for_unknown_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tried: list[str] = []

    def initiate(spn: SpnCandidate, creds: object, *, who: str) -> gss.KrbToken:
        tried.append(spn.principal)
        if spn.service == "cifs":
            raise _failure(Reason.UNKNOWN_SERVER)
        return gss.KrbToken(b"tok", bytes(16), 18, "alice@LAB.TEST", f"{spn.principal}@LAB")

    monkeypatch.setattr(gss, "initiate", initiate)
    trail: list[Attempt] = []
    tok = first_token(_spns(), None, "alice", trail, SourceKind.CCACHE, _translate)
    assert tried == ["cifs/fs1", "CIFS/fs1"]
    assert tok.spn == "CIFS/fs1@LAB" and tok.source is SourceKind.CCACHE and not tok.impersonated
    assert trail == [
        Attempt("ccache", "failed", "cifs/fs1: server not found", "unknown-server-principal")
    ]


def test_first_token_stops_at_any_other_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []

    def initiate(spn: SpnCandidate, creds: object, *, who: str) -> gss.KrbToken:
        tried.append(spn.principal)
        raise _failure(Reason.KDC_UNREACHABLE)

    monkeypatch.setattr(gss, "initiate", initiate)
    with pytest.raises(CredentialError) as ei:
        first_token(_spns(), None, "alice", [], SourceKind.PROXY, _translate, impersonated=True)
    assert tried == ["cifs/fs1"] and ei.value.reason is Reason.KDC_UNREACHABLE


def test_first_token_reports_the_last_unknown_server(monkeypatch: pytest.MonkeyPatch) -> None:
    def initiate(spn: SpnCandidate, creds: object, *, who: str) -> gss.KrbToken:
        raise _failure(Reason.UNKNOWN_SERVER)

    monkeypatch.setattr(gss, "initiate", initiate)
    trail: list[Attempt] = []
    with pytest.raises(CredentialError) as ei:
        first_token(_spns(), None, "alice", trail, SourceKind.KEYTAB, _translate)
    assert ei.value.reason is Reason.UNKNOWN_SERVER and len(trail) == 2
    with pytest.raises(CredentialError, match="no service principal candidates"):
        first_token([], None, "alice", [], SourceKind.KEYTAB, _translate)
