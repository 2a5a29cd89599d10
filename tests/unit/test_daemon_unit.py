"""The warm daemon (daemon.py, handler.py, channel.py) without root: the request reader
(records, SCM_RIGHTS), the handler with a fake pipeline, the parent-handler channel,
policy_sig, the rehearsal, and the serve loop on a tmp socket (a non-root peer is refused;
the accepted path runs with the peer check faked)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from upcall import channel, daemon, handler, keeper, pipeline, wire
from upcall.errors import Reason
from upcall.kernel.request import Request
from upcall.policy import file as daemon_policy_file
from upcall.sources.base import SourceKind, SourceToken
from upcall.sources.proxy_cache import CacheKey, ProxyCache

DESC = "ver=0x2;host=fs1.lab.test;ip4=192.0.2.10;sec=krb5;uid=0x3e8;creduid=0x3e8"
KERNEL_KEY = f"cifs.spnego;0;0;39010000;{DESC}"
KEY = CacheKey("alice@LAB.TEST", "fs1.lab.test", "/run/gp.sock")


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The handler's alarm and address-space limit, recorded instead of set on pytest."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(handler.signal, "alarm", lambda s: seen.setdefault("alarm", s))
    monkeypatch.setattr(
        handler.resource, "setrlimit", lambda what, lim: seen.setdefault("rlimit", (what, lim))
    )
    return seen


class FakePipeline:
    def __init__(self, update: tuple[CacheKey, bytes, int] | None = None) -> None:
        self.update = update
        self.calls: list[tuple[Request, pipeline.Options, dict[str, Any]]] = []

    def __call__(self, req: Request, opts: pipeline.Options, **kw: Any) -> pipeline.Outcome:
        self.calls.append((req, opts, kw))
        tok = SourceToken(
            SourceKind.PROXY, b"tok", bytes(16), 18, "alice@LAB.TEST", "cifs/fs1@LAB.TEST", True
        )
        update = self.update
        return pipeline.Outcome(
            True, req, 1000, token=tok, payload=b"PAYLOAD", cache_later=lambda: update
        )


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakePipeline:
    f = FakePipeline((KEY, b"blob", int(time.time()) + 7200))
    monkeypatch.setattr(pipeline, "run_upcall", f)
    return f


def _send(sock: socket.socket, msg: bytes, fds: list[int] | None = None) -> None:
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
    sock.sendmsg([msg], anc)
    sock.shutdown(socket.SHUT_WR)


def _recv_all(sock: socket.socket) -> list[tuple[bytes, bytes]]:
    buf = b""
    while chunk := sock.recv(65536):
        buf += chunk
    recs, rest = wire.records(buf, wire.REPLY_MAX)
    assert rest == b""
    return recs


# ---- policy_sig and the cache update channel -------------------------------------------------


def test_policy_sig(tmp_path: Path) -> None:
    assert channel.policy_sig(str(tmp_path / "none")) == "none"
    p = tmp_path / "policy.yaml"
    p.write_text("a")
    st = p.stat()
    assert channel.policy_sig(str(p)) == f"{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}:1"
    p.write_text("ab")
    assert channel.policy_sig(str(p)).endswith(":2")


def _update(sig: str = "S", **over: bytes) -> bytes:
    fields = {
        b"s": sig.encode(),
        b"p": KEY.principal.encode(),
        b"h": KEY.host.encode(),
        b"k": KEY.socket.encode(),
        b"b": b"blob",
        b"e": b"%d" % (time.time() + 7200),
    }
    fields.update({k.encode(): v for k, v in over.items()})
    return wire.record(b"u", b"") + b"".join(wire.record(t, v) for t, v in fields.items())


def _lookup(sig: str = "S") -> bytes:
    return wire.record(b"g", b"") + b"".join(
        wire.record(t, v.encode())
        for t, v in ((b"s", sig), (b"p", KEY.principal), (b"h", KEY.host), (b"k", KEY.socket))
    )


def test_an_update_keeps_a_well_formed_credential_and_a_lookup_finds_it() -> None:
    state = channel.CacheState(ProxyCache(), sig="S")
    assert channel.on_message(_update(), state) is None  # updates are not answered
    assert state.cache.get(KEY) == b"blob" and state.sig == "S"
    assert channel.on_message(_lookup(), state) == wire.record(b"b", b"blob")
    # made under another policy: a miss, and the cache stays
    assert channel.on_message(_lookup("other"), state) == wire.record(b"b", b"")
    assert state.cache.get(KEY) == b"blob"


def test_an_update_with_a_new_policy_sig_clears_the_cache() -> None:
    state = channel.CacheState(ProxyCache(), sig="old")
    other = CacheKey("bob@LAB.TEST", "fs2", "/run/gp.sock")
    assert state.cache.put(other, b"x", int(time.time()) + 7200)
    channel.on_message(_update("new"), state)
    assert state.sig == "new" and state.cache.get(other) is None
    assert state.cache.get(KEY) == b"blob"


@pytest.mark.parametrize(
    "data",
    [
        b"",  # nothing sent
        _update()[:-3],  # truncated
        _update(e=b"soon"),  # not a number
        _update(p=b"\xff"),  # not UTF-8
        _update().replace(wire.record(b"s", b"S"), b""),  # a field missing
        _update()[5:],  # no operation
    ],
    ids=["empty", "truncated", "bad-expiry", "not-utf8", "no-sig", "no-op"],
)
def test_malformed_messages_change_nothing(data: bytes) -> None:
    state = channel.CacheState(ProxyCache(), sig="S")
    assert channel.on_message(data, state) is None
    assert len(state.cache) == 0 and state.sig == "S"


def test_a_malformed_lookup_gets_a_miss() -> None:
    state = channel.CacheState(ProxyCache(), sig="S")
    channel.on_message(_update(), state)
    assert channel.on_message(_lookup()[:-2], state) == wire.record(b"b", b"")


def test_channel_link_asks_the_keeper_and_bounds_the_wait() -> None:
    """The handler's side against the keeper's on_message and the parent's on_warm, over
    real SEQPACKET pairs."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pours, ptheirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    state = channel.CacheState(ProxyCache(), sig="S")

    def keeper() -> None:
        while data := theirs.recv(channel.UPDATE_MAX):
            answer = channel.on_message(data, state)
            if answer is not None:
                theirs.send(answer)

    t = threading.Thread(target=keeper)
    t.start()
    link = channel.ChannelLink(pours, ours)
    try:
        assert link.view("S").get(KEY) is None
        link.put("S", KEY, b"blob", int(time.time()) + 7200)
        assert link.view("S").get(KEY) == b"blob"
        assert link.view("T").get(KEY) is None
        link.warm("/etc/p.yaml", None)  # to the parent, not the keeper
        warmth = channel.Warmth()
        ptheirs.settimeout(5)
        channel.on_warm(ptheirs.recv(channel.UPDATE_MAX), warmth)
        assert warmth.last == ("/etc/p.yaml", None)
    finally:
        ours.close()
        t.join(5)
        for s in (theirs, pours, ptheirs):
            s.close()
    # a keeper that never answers: a miss within the bound, not a hang; none at all: a miss
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        start = time.monotonic()
        assert channel.ChannelLink(ours, ours).view("S").get(KEY) is None
        assert time.monotonic() - start < channel.LOOKUP_TIMEOUT + 1
        assert channel.ChannelLink(ours, None).view("S").get(KEY) is None


def test_keeper_serves_the_channels_the_parent_passes_and_ends_with_it() -> None:
    """The real keeper process: two handlers' channels share one cache; EOF on the control
    socket ends it."""
    k = keeper.start([])
    try:
        a, b = k.channel(), k.channel()
        assert a is not None and b is not None
        la, lb = channel.ChannelLink(a, a), channel.ChannelLink(b, b)
        la.put("S", KEY, b"blob", int(time.time()) + 7200)
        deadline = time.monotonic() + 5
        while lb.view("S").get(KEY) is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the update is unanswered: give the keeper a moment
        assert lb.view("S").get(KEY) == b"blob"
        a.close()
        b.close()
    finally:
        k.ctl.close()
        _, status = os.waitpid(k.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_on_warm_takes_only_warm_messages() -> None:
    w = channel.Warmth()
    channel.on_warm(_update(), w)
    channel.on_warm(b"\xff", w)
    assert w.last == (None, None)


# ---- the request reader ----------------------------------------------------------------------


def test_read_request_takes_records_and_the_first_fd_only() -> None:
    a, b = socket.socketpair()
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        _send(a, wire.request("dry", 0, DESC, ["-d"]), [r1, r2])
        recs, fd = handler._read_request(b)
        assert recs[:2] == [(b"V", b"1"), (b"M", b"dry")] and recs[-1] == (b"A", b"-d")
        assert fd is not None and os.path.sameopenfile(fd, r1)
        os.close(fd)
        # the second fd was closed by the reader: only our original of it stays open
        os.close(w2)
        assert os.read(r2, 1) == b""
    finally:
        for x in (r1, w1, r2):
            os.close(x)
        a.close()
        b.close()


def test_read_request_refuses_truncated_and_oversized() -> None:
    a, b = socket.socketpair()
    _send(a, wire.request("dry", 0, DESC, [])[:-2])
    with pytest.raises(ValueError, match="truncated"):
        handler._read_request(b)
    a.close()
    b.close()
    a, b = socket.socketpair()
    t = threading.Thread(target=lambda: (a.sendall(b"x" * (wire.REQUEST_MAX + 10)), a.close()))
    t.start()
    try:
        with pytest.raises(ValueError, match="too large"):
            handler._read_request(b)
    finally:
        t.join()
        b.close()


def test_peer_uid_is_the_connecting_process_uid() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert daemon._peer_uid(b) == os.getuid()


# ---- the handler, in-process ---------------------------------------------------------------


def _handle(
    msg: bytes, state: channel.CacheState | None = None, waited: float = 0.0
) -> list[tuple[bytes, bytes]]:
    a, b = socket.socketpair()
    with a, b:
        _send(a, msg)
        assert handler.handle(handler.Pending(b, time.monotonic() - waited), state) == 0
        assert b.fileno() == -1  # closed by the handler as soon as the reply is out
        return _recv_all(a)


def test_handle_dry_run_replies_like_in_process(
    fake: FakePipeline, limits: dict[str, Any], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    argv = ["--dry-run", DESC, "--deadline", "6", "--policy", str(policy)]
    recs = _handle(wire.request("dry", 0, DESC, argv))
    reply = wire.Reply.decode(recs)
    assert reply.exit == 0 and reply.payload == b"PAYLOAD"
    assert "outcome=ok" in reply.stdout and "via=daemon" in reply.stdout
    req, opts, kw = fake.calls[0]
    assert req.host == "fs1.lab.test" and opts.policy_path == str(policy)
    assert 5.0 < opts.deadline <= 6.0 and kw["pidfd"] is None
    assert kw["cache"] is None  # no daemon behind this handler: nothing to cache into
    assert limits["alarm"] == int(opts.deadline + handler.HANDLER_SLACK)
    assert limits["rlimit"][1] == (handler.HANDLER_AS_MAX, handler.HANDLER_AS_MAX)


def test_handle_counts_time_spent_queued(fake: FakePipeline, limits: dict[str, Any]) -> None:
    recs = _handle(wire.request("dry", 0, DESC, ["--dry-run", DESC]), waited=3.0)
    reply = wire.Reply.decode(recs)
    assert 'via="daemon (queued 3.0 s)"' in reply.stdout
    assert fake.calls[0][1].deadline == pytest.approx(7.0, abs=0.5)


def test_handle_key_sends_the_cache_update_and_uses_the_matching_cache(
    fake: FakePipeline, limits: dict[str, Any], tmp_path: Path
) -> None:
    policy = str(tmp_path / "none.yaml")
    sig = channel.policy_sig(policy)
    state = channel.CacheState(ProxyCache(), sig=sig)
    recs = _handle(wire.request("key", 42, KERNEL_KEY, ["--policy", policy, "42"]), state)
    reply = wire.Reply.decode(recs)
    assert reply.exit == 0 and reply.payload == b"PAYLOAD"
    assert "key=42" in reply.lines[-1][1]
    assert fake.calls[0][2]["cache"] is state.cache  # same policy: the daemon's cache
    assert state.sig == sig and state.cache.get(KEY) == b"blob"  # the update went back


def test_handle_with_a_changed_policy_uses_a_fresh_cache(
    fake: FakePipeline, limits: dict[str, Any]
) -> None:
    state = channel.CacheState(ProxyCache(), sig="stale")
    _handle(wire.request("key", 42, KERNEL_KEY, ["42"]), state)
    assert fake.calls[0][2]["cache"] is not state.cache


def test_handle_bad_arguments_replies_exit_2(fake: FakePipeline, limits: dict[str, Any]) -> None:
    reply = wire.Reply.decode(_handle(wire.request("key", 42, KERNEL_KEY, ["--bogus", "42"])))
    assert reply.exit == 2 and reply.payload is None and fake.calls == []
    assert "reason=bad-arguments" in reply.lines[0][1] and "key=42" in reply.lines[0][1]
    assert limits == {}  # refused before any limit was set


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        (wire.record(b"V", b"2") + wire.record(b"M", b"dry"), "unknown protocol version"),
        (wire.request("sing", 0, DESC, []), "unknown mode 'sing'"),
    ],
)
def test_handle_refuses_protocol_errors(
    fake: FakePipeline, limits: dict[str, Any], msg: bytes, error: str
) -> None:
    a, b = socket.socketpair()
    with a, b:
        _send(a, msg)
        with pytest.raises(ValueError, match=error):
            handler.handle(handler.Pending(b, time.monotonic()))
    assert fake.calls == []


# ---- binding and main ------------------------------------------------------------------------


def test_bind_refuses_a_directory_others_can_enter(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    with pytest.raises(SystemExit, match="must be a root-owned 0700 directory"):
        daemon._bind(str(d / "upcall.sock"))


def test_bind_makes_a_root_only_socket(tmp_path: Path) -> None:
    path = tmp_path / "new" / "upcall.sock"
    if os.getuid() != 0:
        with pytest.raises(SystemExit, match="root-owned"):
            daemon._bind(str(path))
        return
    s = daemon._bind(str(path))
    with s:
        assert (path.parent.stat().st_mode & 0o777) == 0o700
        assert (path.stat().st_mode & 0o777) == 0o600


def test_systemd_socket_only_for_our_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LISTEN_PID", raising=False)
    assert daemon._systemd_socket() is None
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert daemon._systemd_socket() is None


def test_main_binds_preloads_and_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = socket.socketpair()
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(daemon, "_bind", lambda path: (seen.append(("bind", path)), a)[1])
    monkeypatch.setattr(daemon, "serve", lambda *args: (seen.append(("serve", *args)), 0)[1])
    with a, b:
        rc = daemon.main(["--socket", "/x/s", "--max-workers", "3", "--exit-after", "4"])
        assert rc == 0 and not a.getblocking()
    assert seen[0] == ("bind", "/x/s") and seen[1][:4] == ("serve", a, 3, 4)
    assert len(seen[1]) == 5 and not seen[1][4]  # the queue: nothing accepted early
    assert list(os.environ) == ["PATH"]  # the daemon's environment is its own


# ---- the serve loop --------------------------------------------------------------------------


def _listener(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "d.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(8)
    s.setblocking(False)
    return s, path


def _client(path: str, out: list[list[tuple[bytes, bytes]]]) -> None:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(20)
    with c:
        c.connect(path)
        _send(c, wire.request("dry", 0, DESC, ["--dry-run", DESC]))
        out.append(_recv_all(c))


def test_serve_acknowledges_queues_and_forks_handlers(
    tmp_path: Path, fake: FakePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "_peer_uid", lambda conn: 0)  # as request-key's root client
    listener, path = _listener(tmp_path)
    got: list[list[tuple[bytes, bytes]]] = []
    clients = [threading.Thread(target=_client, args=(path, got)) for _ in range(3)]
    for t in clients:
        t.start()
    with listener:
        assert daemon.serve(listener, max_workers=1, exit_after=3) == 0
    for t in clients:
        t.join(20)
    assert len(got) == 3
    for recs in got:
        assert recs[0] == (b"K", b"")
        reply = wire.Reply.decode(recs[1:])
        assert reply.exit == 0 and "outcome=ok" in reply.stdout


def test_serve_refuses_a_non_root_peer(tmp_path: Path) -> None:
    """Run as root the peer is root and gets the acknowledgement; anyone else gets nothing."""
    listener, path = _listener(tmp_path)
    pid = os.fork()
    if pid == 0:  # the daemon, same uid as the test
        code = 1
        try:
            code = daemon.serve(listener, 1, exit_after=1)
        finally:
            os._exit(code)
    listener.close()
    try:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(10)
        with c:
            c.connect(path)
            first = c.recv(5)
        if os.getuid() == 0:
            assert first == wire.record(b"K", b"")
        else:
            assert first == b""  # closed without an answer: the client works in-process
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_reap_forgets_finished_and_unknown_children() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    h = daemon.Handler(pid, socket.socket())
    active = {pid: h}
    deadline = time.monotonic() + 5
    while active and time.monotonic() < deadline:
        daemon._reap(active)
        time.sleep(0.01)
    assert active == {}
    active = {pid: h}  # already reaped: ChildProcessError counts as done
    daemon._reap(active)
    assert active == {}
    h.chan.close()


def test_outcome_failure_reason_is_kept_by_the_reply(
    monkeypatch: pytest.MonkeyPatch, limits: dict[str, Any]
) -> None:
    def failing(req: Request, opts: pipeline.Options, **kw: Any) -> pipeline.Outcome:
        return pipeline.Outcome(False, req, 1000, Reason.CALLER_GONE, "gone", "retry")

    monkeypatch.setattr(pipeline, "run_upcall", failing)
    reply = wire.Reply.decode(_handle(wire.request("key", 7, KERNEL_KEY, ["7"])))
    assert reply.exit == 1 and reply.payload is None
    assert "reason=caller-gone" in reply.lines[-1][1]


def test_rehearsal_runs_the_request_code_without_forking_reading_callers_or_printing(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    calls: list[str] = []
    real = pipeline.run_upcall

    def spy(req: Request, opts: pipeline.Options, **kw: Any) -> pipeline.Outcome:
        out = real(req, opts, **kw)
        calls.append(f"{req.host} pid={req.pid} ok={out.ok} reason={out.reason}")
        return out

    monkeypatch.setattr(pipeline, "run_upcall", spy)
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("the rehearsal forked"))
    handler._rehearse()  # no policy: own credentials only; they fail, then they give a token
    me = os.getpid()  # the caller is the rehearsing handler itself: nobody else is read
    assert calls == [
        f"rehearsal.invalid pid={me} ok=False reason=Reason.NO_CREDENTIALS",
        f"rehearsal.invalid pid={me} ok=True reason=None",
    ]
    handler._rehearse("/nonexistent/policy.yaml", "/nonexistent/krb5.conf")  # refused: quietly
    assert len(calls) == 4 and all("reason=Reason.BAD_POLICY" in c for c in calls[2:])
    assert capfd.readouterr() == ("", "")


def test_rehearsal_takes_a_repeats_way_own_credentials_failing_then_gssproxy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With a policy that impersonates, the first rehearsal is a repeat impersonated access
    (own credentials fail, gssproxy's worker gives the token: its result parsed as a real
    one), the second an own ticket; neither forks, and no gssproxy is asked."""
    from upcall.policy.rules import Defaults, Mode, Policy

    pol = Policy(defaults=Defaults(mode=Mode.LOCAL_FIRST, socket="/nonexistent/gp.sock"),
                 principal_map={"65534": "rehearsal@INVALID"}, origin="test policy")  # fmt: skip
    monkeypatch.setattr(daemon_policy_file, "load", lambda path: pol)
    krb5 = tmp_path / "krb5.conf"
    krb5.write_text("[libdefaults]\n default_realm = INVALID\n")
    seen: list[tuple[bool, str | None, list[str]]] = []
    real = pipeline.run_upcall

    def spy(req: Request, opts: pipeline.Options, **kw: Any) -> pipeline.Outcome:
        out = real(req, opts, **kw)
        source = out.token.source.value if out.token is not None else None
        seen.append((out.ok, source, [f"{a.source}:{a.outcome}" for a in out.trail]))
        return out

    monkeypatch.setattr(pipeline, "run_upcall", spy)
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("the rehearsal forked"))
    handler._rehearse(None, str(krb5))
    (ok1, src1, trail1), (ok2, src2, _) = seen
    assert (ok1, src1, ok2, src2) == (True, "proxy", True, "ccache")
    assert "ccache:failed" in trail1 and "local:left" in trail1 and "proxy:ok" in trail1


def test_warm_remembers_the_policy_and_its_only_gssproxy_socket(tmp_path: Path) -> None:
    def policy(*sockets: str) -> str:
        p = tmp_path / f"policy-{len(sockets)}.yaml"
        rules = "".join(
            f"- match:\n    servers: [fs{i}.lab.test]\n  mode: local-first\n  socket: {s}\n"
            for i, s in enumerate(sockets[1:])
        )
        text = f"version: 1\ndefaults:\n  mode: local-first\n  socket: {sockets[0]}\n"
        p.write_text(text + (f"rules:\n{rules}" if rules else ""))
        return str(p)

    w = channel.Warmth()
    one = policy("/run/gp/a.sock")
    with pytest.MonkeyPatch.context() as m:  # the file checks want root's files: trust these
        m.setattr(daemon_policy_file, "read_trusted", lambda path: Path(path).read_text())
        w.warm(one, None)
        assert w.last == (one, None) and w.proxy == "/run/gp/a.sock"
        w.warm(policy("/run/gp/a.sock", "/run/gp/b.sock"), None)
        assert w.proxy == ""  # two services: a gssproxy worker, but no guess at its socket
        w.warm(str(tmp_path / "missing.yaml"), None)
        assert w.proxy is None and w.last[0] == str(tmp_path / "missing.yaml")
