"""`cifs-upcall serve`: the warm daemon behind the thin client. Root, host namespaces.

The parent imports everything once and then only accepts, queues and forks: it is
single-threaded (forking from threads is unsafe, and a worker's setns(user) needs a single
thread) and makes no GSSAPI call (gssproxy's interposer reads its environment at libgssapi's
first call, which must happen in each proxy worker). Per request it forks a handler that reads
the request, runs respond.py exactly as the in-process path does (which forks the credential
workers of child.py behind the boundary of boundary.py), replies, and exits.

Only uid 0 peers are served (SO_PEERCRED): the socket lives in a root-only directory, and
request-key runs the client as root. Concurrency is bounded (--max-workers); connections
beyond it are accepted and acknowledged, then queued; each handler has a hard CPU-time and
address-space limit and an alarm past the upcall's deadline, so no request can hold or bloat
the daemon.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import select
import signal
import socket
import stat
import struct
import sys
import syslog
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from . import log, wire
from .client import DEFAULT_SOCKET, clean_environment
from .pipeline import SerialWorkers, Workers
from .policy.file import DEFAULT_PATH as DEFAULT_POLICY
from .policy.rules import Step
from .sources.proxy_cache import CRED_MAX, CacheKey, CredCache, ProxyCache

if TYPE_CHECKING:
    from .sources.local import LocalPlan
    from .sources.proxy import ProxyPlan
    from .worker.child import Result

LISTEN_FD = 3  # systemd socket activation: the first passed fd
READ_TIMEOUT = 2.0  # for the client's request to arrive once connected
HANDLER_AS_MAX = 1 << 30  # address space of one request's handler and its workers
HANDLER_SLACK = 10  # seconds past the upcall deadline before a handler's alarm kills it
QUEUE_MAX = 1024
CPUS = os.cpu_count() or 1
SPARE_WHILE_ACTIVE = max(1, CPUS - 1)  # the spare is made only while fewer handlers run


@dataclass
class Pending:
    conn: socket.socket
    accepted: float  # time.monotonic() (CLOCK_MONOTONIC: the same in every process)


UPDATE_MAX = CRED_MAX + 4096  # one message on a handler's channel, bounded


@dataclass
class CacheState:
    """Parent: gssproxy credentials of earlier upcalls (root-only memory, never persisted),
    valid for the policy file they were made under (`sig`); a changed policy empties it.
    The one owner of that rule: handlers reach it through ChannelLink, tests directly."""

    cache: ProxyCache
    sig: str = ""
    proxy_seen: bool = False  # a handler asked about gssproxy: spares get a gssproxy worker
    socket: str | None = None  # the one gssproxy socket of the policy last warmed, if one
    last: tuple[str | None, str | None] = (None, None)  # the policy, krb5.conf last warmed

    def view(self, sig: str) -> CredCache:
        """What a request made under policy `sig` may use: nothing made under another."""
        return self.cache if sig == self.sig else ProxyCache()

    def put(self, sig: str, key: CacheKey, blob: bytes, expires: int) -> None:
        if sig != self.sig:
            self.cache.clear()  # the policy changed: nothing made under the old one is kept
            self.sig = sig
        self.cache.put(key, blob, expires)

    def warm(self, policy: str | None, krb5: str | None) -> None:
        """Parse the policy and host krb5.conf a handler used, here in the parent, so that
        handlers forked from now on find them parsed (policy_file.parse, profile.read keep
        what they parsed; the files are still checked and read per request)."""
        from .krb5 import profile
        from .policy import file as policy_file

        with contextlib.suppress(Exception):  # the handler reports the problem, not us
            profile.load(krb5)
        try:
            sockets = policy_file.load(policy).sockets
        except Exception:
            sockets = frozenset()
        self.last = (policy, krb5)
        self.socket = next(iter(sockets)) if len(sockets) == 1 else None


class CacheLink(Protocol):
    """Handler: what it asks of the daemon's parent (CacheState, or ChannelLink): the
    cache, and to warm what this request parsed."""

    def view(self, sig: str) -> CredCache: ...

    def put(self, sig: str, key: CacheKey, blob: bytes, expires: int) -> None: ...

    def warm(self, policy: str | None, krb5: str | None) -> None: ...


def _key_records(sig: str, key: CacheKey) -> bytes:
    return b"".join(wire.record(t, v.encode()) for t, v in (
        (b"s", sig), (b"p", key.principal), (b"h", key.host), (b"k", key.socket)))  # fmt: skip


LOOKUP_TIMEOUT = 0.5  # seconds for the parent to answer a cache lookup (it only looks up)


class ChannelLink:
    """Handler: the parent's CacheState over this handler's SEQPACKET channel. One message a
    question: `g` (lookup) answered by `b` (the blob, maybe empty); `u` (update), unanswered.
    A parent that does not answer in time is a miss, never a wait."""

    def __init__(self, chan: socket.socket) -> None:
        self.chan = chan

    def view(self, sig: str) -> CredCache:
        return _ChannelView(self, sig)

    def lookup(self, sig: str, key: CacheKey) -> bytes | None:
        try:
            self.chan.settimeout(LOOKUP_TIMEOUT)
            self.chan.send(wire.record(b"g", b"") + _key_records(sig, key))
            data = self.chan.recv(UPDATE_MAX)
            recs, rest = wire.records(data, UPDATE_MAX)
        except (OSError, ValueError):
            return None
        if rest or len(recs) != 1 or recs[0][0] != b"b":
            return None
        return recs[0][1] or None

    def warm(self, policy: str | None, krb5: str | None) -> None:
        msg = wire.record(b"w", b"") + wire.record(b"P", (policy or "").encode())
        msg += wire.record(b"H", (krb5 or "").encode())
        if len(msg) <= UPDATE_MAX:
            with contextlib.suppress(OSError):
                self.chan.send(msg)

    def put(self, sig: str, key: CacheKey, blob: bytes, expires: int) -> None:
        msg = wire.record(b"u", b"") + _key_records(sig, key)
        msg += wire.record(b"b", blob) + wire.record(b"e", b"%d" % expires)
        if len(msg) <= UPDATE_MAX:
            with contextlib.suppress(OSError):
                self.chan.send(msg)


@dataclass(frozen=True)
class _ChannelView:
    link: ChannelLink
    sig: str

    def get(self, key: CacheKey) -> bytes | None:
        return self.link.lookup(self.sig, key)


def on_message(data: bytes, state: CacheState) -> bytes | None:
    """Parent: one message from a handler's channel; the answer to send back, if any.
    Malformed messages are dropped (a lookup gets an empty answer)."""
    try:
        recs, rest = wire.records(data, UPDATE_MAX)
        op = recs[0][0] if recs else b""
        f = dict(recs[1:])
        if rest:
            raise ValueError("truncated")
        if op == b"w":
            state.warm(f[b"P"].decode() or None, f[b"H"].decode() or None)
            return None
        sig = f[b"s"].decode()
        key = CacheKey(f[b"p"].decode(), f[b"h"].decode(), f[b"k"].decode())
    except (KeyError, ValueError, UnicodeDecodeError):
        return wire.record(b"b", b"") if data[:1] == b"g" else None
    if op in (b"g", b"u"):
        state.proxy_seen = True
    if op == b"g":
        return wire.record(b"b", state.view(sig).get(key) or b"")
    if op == b"u":
        try:
            blob, expires = f[b"b"], int(f[b"e"])
        except (KeyError, ValueError):
            return None
        state.put(sig, key, blob, expires)
    return None


def policy_sig(path: str | None) -> str:
    """What identifies the policy file's content for the cache: inode, mtime, size."""
    try:
        st = os.stat(path or DEFAULT_POLICY)
    except OSError:
        return "none"
    return f"{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cifs-upcall serve",
        description="Serve cifs.spnego upcalls for the thin client (run by cifs-upcall.socket).",
    )
    p.add_argument(
        "--socket",
        default=DEFAULT_SOCKET,
        metavar="PATH",
        help=f"listen here unless systemd passes a socket (default {DEFAULT_SOCKET})",
    )
    p.add_argument(
        "--max-workers",
        type=int,
        default=32,
        metavar="N",
        help="requests handled at once; more are queued (default 32)",
    )
    p.add_argument("--exit-after", type=int, default=0, metavar="N",
                   help="exit after N requests (tests and benchmarks; default: never)")  # fmt: skip
    return p


def preload() -> None:
    """Parent: import all a request can need, once, without calling into GSSAPI (gssproxy's
    interposer reads its environment at libgssapi's first call: that must be each worker's)."""
    import pickle  # noqa: F401

    import keyutils  # noqa: F401
    import yaml  # noqa: F401

    from . import journal, pipeline, respond  # noqa: F401
    from .cli import parser
    from .kernel import origin, payload, request  # noqa: F401
    from .krb5 import profile, spnego  # noqa: F401
    from .policy import file as policy_file  # noqa: F401
    from .policy import parse as policy_parse  # noqa: F401
    from .sources import local, proxy, proxy_cache  # noqa: F401
    from .worker import boundary, child  # noqa: F401

    parser()  # built once here, not in every handler
    boundary.preload_host()
    CacheState(ProxyCache()).warm(None, None)  # the default policy and /etc/krb5.conf


def _systemd_socket() -> socket.socket | None:
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        return None
    return socket.socket(fileno=LISTEN_FD)


def _bind(path: str) -> socket.socket:
    """A socket only root can reach: its directory root-owned 0700 (made if missing)."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, mode=0o700, exist_ok=True)
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        raise SystemExit(f"cifs-upcall serve: {d} must be a root-owned 0700 directory")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        s.bind(path)
    finally:
        os.umask(old)
    s.listen(128)
    return s


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def main(argv: list[str]) -> int:
    """`cifs-upcall serve ...`: root, host namespaces, started by cifs-upcall.service."""
    a = _parser().parse_args(argv)
    listener = _systemd_socket()
    clean_environment()  # after reading LISTEN_*: nothing inherited reaches a worker
    log.setup(debug=False, echo=False)
    queue: deque[Pending] = deque()
    if listener is not None:
        # Socket activation: the upcall that started us is waiting. Acknowledge it before the
        # imports (seconds on a slow machine), so its client does not give up on the daemon.
        listener.setblocking(False)
        while _accept(listener, queue):
            pass
    preload()
    if listener is None:
        listener = _bind(a.socket)
    listener.setblocking(False)
    log.emit(syslog.LOG_INFO, log.kv(daemon="listening", socket=a.socket,
                                     max_workers=a.max_workers))  # fmt: skip
    import gc

    gc.collect()
    gc.freeze()  # what is loaded now stays shared with every forked handler (no COW churn)
    return serve(listener, a.max_workers, a.exit_after, queue)


@dataclass
class Handler:
    """Parent: a forked handler and the parent's end of its channel. Forked before it has a
    request (a spare), so that the fork and its prepared local worker are off the request's
    path; given one connection (SCM_RIGHTS), it serves that and exits."""

    pid: int
    chan: socket.socket
    pidfd: int = -1  # readable once it has exited: the loop wakes to reap it at once


def serve(
    listener: socket.socket,
    max_workers: int,
    exit_after: int = 0,
    queue: deque[Pending] | None = None,
) -> int:
    """Parent loop: accept (uid 0 only), acknowledge, queue, hand each request to a handler
    (up to max_workers at once; one spare handler waits, forked ahead), answer the handlers'
    cache lookups and keep their updates."""
    queue = queue if queue is not None else deque()
    active: dict[int, Handler] = {}  # pid -> handler serving a request
    chans: dict[int, Handler] = {}  # channel fd -> handler, while its channel is open
    state = CacheState(ProxyCache())
    spare: Handler | None = None
    served = 0
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    while not exit_after or served < exit_after or active or queue:
        _reap(active)
        while queue and len(active) < max_workers:
            p = queue.popleft()
            h, spare = spare or _fork_handler(listener, [*active.values(), *chans.values()]), None
            if _hand_over(h, p, busy=len(active) >= CPUS):
                active[h.pid] = h
                chans[h.chan.fileno()] = h
                served += 1
            else:  # the spare died: serve this one with a fresh handler
                _discard(h, active)
                queue.appendleft(p)
            p.conn.close()
        wanted = not exit_after or served + len(queue) < exit_after
        if spare is None and wanted and len(active) < SPARE_WHILE_ACTIVE:
            # Forked (and rehearsed) while CPUs are free, so that making it never slows a
            # request in flight; under load handlers are forked per request instead.
            others = [*active.values(), *chans.values()]
            proxy = (state.socket or "") if state.proxy_seen else None
            spare = _fork_handler(listener, others, rehearse=state.last, proxy=proxy)
        lfd = listener.fileno()
        wait = [lfd] if wanted else []
        exits = [h.pidfd for h in active.values() if h.pidfd >= 0]
        ready, _, _ = select.select([*wait, *chans, *exits], [], [], 0.05 if active else 1.0)
        for fd in ready:
            if fd in chans:
                _on_channel(chans, fd, state)  # (an exit is reaped at the top of the loop)
        if lfd in ready:
            _accept(listener, queue)
    if spare is not None:
        _discard(spare, active)
    while active:
        _reap(active)
        time.sleep(0.01)
    return 0


HANDOFF = struct.Struct("d?")  # when the request was accepted; whether the daemon is busy


def _hand_over(h: Handler, p: Pending, busy: bool) -> bool:
    """Parent: the connection, when it was accepted, and whether every CPU already has a
    handler (then the handler runs its steps in turn instead of overlapping them)."""
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", p.conn.fileno()))]
    try:
        h.chan.sendmsg([HANDOFF.pack(p.accepted, busy)], anc)
    except OSError:
        return False
    return True


def _discard(h: Handler, active: dict[int, Handler]) -> None:
    """Parent: let a handler that has no request go (EOF makes it exit); _reap collects it."""
    h.chan.close()
    active[h.pid] = h


def _on_channel(chans: dict[int, Handler], fd: int, state: CacheState) -> None:
    """Parent: one message from a handler (a lookup answered at once, or an update)."""
    h = chans[fd]
    try:
        data = h.chan.recv(UPDATE_MAX + 1)
    except OSError:
        data = b""
    if not data:
        del chans[fd]
        h.chan.close()
        return
    answer = on_message(data, state) if len(data) <= UPDATE_MAX else None
    if answer is not None:
        with contextlib.suppress(OSError):
            h.chan.send(answer)


def _accept(listener: socket.socket, queue: deque[Pending]) -> bool:
    """Parent: take one waiting connection (uid 0 peers only), acknowledge it, queue it.
    False when none was waiting."""
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return False
    if _peer_uid(conn) != 0 or len(queue) >= QUEUE_MAX:
        conn.close()  # the client works in-process (or, not root, was never ours)
        return True
    try:
        conn.sendall(wire.record(b"K", b""))  # a daemon has it: stop waiting for one
    except OSError:
        conn.close()
        return True
    queue.append(Pending(conn, time.monotonic()))
    return True


def _reap(active: dict[int, Handler]) -> None:
    for pid in list(active):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            h = active.pop(pid)
            if h.pidfd >= 0:
                os.close(h.pidfd)
                h.pidfd = -1  # its channel may outlive it in chans: the number is free now


def _fork_handler(
    listener: socket.socket, others: list[Handler],
    rehearse: tuple[str | None, str | None] | None = None, proxy: str | None = None,
) -> Handler:  # fmt: skip
    """Parent: a handler waiting for its connection, with its local worker (and unless
    `proxy` is None a gssproxy worker, told the socket it will most likely use) already
    forked; `rehearse` (the policy and host krb5.conf the last request used) for a spare,
    not for one forked for a waiting request."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid:
        theirs.close()
        return Handler(pid, ours, os.pidfd_open(pid))
    code = 1
    try:
        ours.close()
        for h in others:  # the other handlers' channels and pidfds are not this one's
            h.chan.close()
            if h.pidfd >= 0:
                with contextlib.suppress(OSError):
                    os.close(h.pidfd)
        listener.close()
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        code = _handler_main(theirs, rehearse, proxy)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _handler_main(
    chan: socket.socket, rehearse: tuple[str | None, str | None] | None, proxy: str | None
) -> int:
    """Handler: prepare its workers, rehearse, wait for the connection, serve it."""
    from .pipeline import PreparedWorkers

    workers = PreparedWorkers(proxy=proxy)
    if rehearse is not None:
        _rehearse(*rehearse)
    try:
        data, anc, _flags, _ = chan.recvmsg(64, socket.CMSG_SPACE(4))
        fds = _fds(anc)
        if len(data) != HANDOFF.size or len(fds) != 1:
            return 0  # the parent let us go (EOF) or is not making sense
        accepted, busy = HANDOFF.unpack(data)
        workers.overlap = not busy
        conn = socket.socket(fileno=fds[0])
        return handle(Pending(conn, accepted), ChannelLink(chan), workers)
    finally:
        workers.close()


# No pid (no caller to read), a documentation address, uid 0: nothing of anyone's is read.
REHEARSAL = "ver=0x2;host=rehearsal.invalid;ip4=192.0.2.1;sec=krb5;uid=0xfffe;creduid=0xfffe"


class _NoCredentials(SerialWorkers):
    """The rehearsal's workers: every step fails at once, nothing is forked."""

    def run(self, step: Step, plan: LocalPlan | ProxyPlan, budget: float, what: str) -> Result:
        from .errors import CredentialError

        raise CredentialError("rehearsal", hint="")


def _rehearse(policy: str | None = None, krb5: str | None = None) -> None:
    """Spare handler, before it has a request: run a request's code once on REHEARSAL (with
    the policy and host krb5.conf the last request used) and workers that refuse, so that
    the copy-on-write faults a forked handler takes on its first run (~850 pages here, ~2 ms
    under this hypervisor) are paid before anyone waits. Reads root's policy and krb5.conf
    and NSS for uid 65534, builds a reply, sends and logs nothing."""
    from . import respond
    from .cli import parse_args

    extra = [*(["--policy", policy] if policy else []),
             *(["--host-krb5-config", krb5] if krb5 else [])]  # fmt: skip
    a = parse_args([*extra, "--dry-run", REHEARSAL, "--json"])
    with contextlib.suppress(Exception):
        respond.dry_reply(REHEARSAL, a, None, "daemon", workers=_NoCredentials())[0].encode()


def _fds(anc: list[tuple[int, int, bytes]]) -> list[int]:
    out: list[int] = []
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            out.extend(struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4]))
    return out


def _read_request(conn: socket.socket) -> tuple[list[tuple[bytes, bytes]], int | None]:
    """Handler: the client's records and the pidfd it sent, bounded in size and time."""
    conn.settimeout(READ_TIMEOUT)
    buf, fds = b"", list[int]()
    while True:
        data, anc, _flags, _ = conn.recvmsg(wire.REQUEST_MAX, socket.CMSG_SPACE(4))
        fds.extend(_fds(anc))
        if not data:
            break
        buf += data
        if len(buf) > wire.REQUEST_MAX:
            raise ValueError("request too large")
    recs, rest = wire.records(buf, wire.REQUEST_MAX)
    if rest:
        raise ValueError("truncated request")
    for extra in fds[1:]:
        os.close(extra)
    return recs, (fds[0] if fds else None)


def handle(p: Pending, link: CacheLink | None = None, workers: Workers | None = None) -> int:
    """Handler: parse, respond exactly as in-process, reply; a new gssproxy credential goes
    to the daemon's cache through `link`."""
    from . import respond
    from .cli import ArgumentError, parse_args
    from .worker import child

    recs, pidfd = _read_request(p.conn)
    fields: dict[bytes, bytes] = {}
    argv: list[str] = []
    for tag, data in recs:
        if tag == b"A":
            argv.append(data.decode("utf-8", "surrogateescape"))
        else:
            fields[tag] = data
    if fields.get(b"V") != wire.VERSION:
        raise ValueError("unknown protocol version")
    mode = fields.get(b"M", b"").decode()
    serial = int(fields.get(b"S", b"0"))
    text = fields.get(b"D", b"").decode("utf-8", "replace")
    try:
        a = parse_args(argv)
    except ArgumentError as e:
        p.conn.sendall(respond.bad_arguments(serial or None, str(e), argv).encode())
        p.conn.close()
        return 0
    waited = time.monotonic() - p.accepted
    a.deadline = max(0.0, a.deadline - waited)  # time spent queued counts
    signal.alarm(int(a.deadline + HANDLER_SLACK))
    resource.setrlimit(resource.RLIMIT_AS, (HANDLER_AS_MAX, HANDLER_AS_MAX))
    via = "daemon" if waited < 1 else f"daemon (queued {waited:.1f} s)"
    sig = policy_sig(a.policy)
    cache = link.view(sig) if link is not None else None
    if mode == "key":
        reply, out = respond.key_reply(serial, text, a, pidfd, via, cache=cache, workers=workers)
    elif mode == "dry":
        reply, out = respond.dry_reply(text, a, pidfd, via, cache=cache, workers=workers)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    p.conn.sendall(reply.encode())
    p.conn.close()  # the client reads to EOF: give it now, not after this process's teardown
    if out is not None and out.cache_update is not None and link is not None:
        link.put(sig, *out.cache_update)
    if link is not None:
        link.warm(a.policy, a.host_krb5_config)  # after the reply: off the request's path
    child.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
