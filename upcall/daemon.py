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

from . import log, wire
from .client import DEFAULT_SOCKET, clean_environment
from .policy.file import DEFAULT_PATH as DEFAULT_POLICY
from .sources.proxy_cache import CRED_MAX, CacheKey, ProxyCache

LISTEN_FD = 3  # systemd socket activation: the first passed fd
READ_TIMEOUT = 2.0  # for the client's request to arrive once connected
HANDLER_AS_MAX = 1 << 30  # address space of one request's handler and its workers
HANDLER_SLACK = 10  # seconds past the upcall deadline before a handler's alarm kills it
QUEUE_MAX = 1024


@dataclass
class Pending:
    conn: socket.socket
    accepted: float


@dataclass
class CacheState:
    """Parent: gssproxy credentials of earlier upcalls (root-only memory, never persisted),
    valid for the policy file they were made under (`sig`); a changed policy empties it."""

    cache: ProxyCache
    sig: str = ""


UPDATE_MAX = CRED_MAX + 4096  # one handler's cache update, bounded like everything it sends


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
    import keyutils  # noqa: F401
    import yaml  # noqa: F401

    from . import journal, pipeline, respond  # noqa: F401
    from .kernel import origin, payload, request  # noqa: F401
    from .krb5 import profile, spnego  # noqa: F401
    from .policy import file as policy_file  # noqa: F401
    from .policy import parse as policy_parse  # noqa: F401
    from .sources import local, proxy, proxy_cache  # noqa: F401
    from .worker import boundary, child  # noqa: F401

    boundary.preload_host()


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


def serve(
    listener: socket.socket,
    max_workers: int,
    exit_after: int = 0,
    queue: deque[Pending] | None = None,
) -> int:
    """Parent loop: accept (uid 0 only), acknowledge, queue, fork up to max_workers."""
    queue = queue if queue is not None else deque()
    active: set[int] = set()
    updates: dict[int, bytearray] = {}  # a handler's pipe -> what it sent so far
    state = CacheState(ProxyCache())
    served = 0
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    while not exit_after or served < exit_after or active or queue:
        _reap(active)
        while queue and len(active) < max_workers:
            p = queue.popleft()
            pid, fd = _fork_handler(listener, p, state, list(updates))
            active.add(pid)
            updates[fd] = bytearray()
            p.conn.close()
            served += 1
        accepting = not exit_after or served + len(queue) < exit_after
        lfd = listener.fileno()
        wait = [lfd] if accepting else []
        ready, _, _ = select.select([*wait, *updates], [], [], 0.05 if active else 1.0)
        for fd in ready:
            if fd != lfd:
                _read_update(fd, updates, state)
        if lfd in ready:
            _accept(listener, queue)
    while active:
        _reap(active)
        time.sleep(0.01)
    return 0


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


def _reap(active: set[int]) -> None:
    for pid in list(active):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            active.discard(pid)


def _read_update(fd: int, updates: dict[int, bytearray], state: CacheState) -> None:
    """Parent: a handler's cache update, complete at EOF; bounded, checked, then kept."""
    chunk = os.read(fd, 65536)
    buf = updates[fd]
    buf += chunk
    if chunk and len(buf) <= UPDATE_MAX:
        return
    os.close(fd)
    del updates[fd]
    if chunk or not buf:
        return  # oversized (dropped) or nothing to keep
    try:
        recs, rest = wire.records(bytes(buf), UPDATE_MAX)
        f = dict(recs)
        if rest:
            return
        sig = f[b"s"].decode()
        key = CacheKey(f[b"p"].decode(), f[b"h"].decode(), f[b"k"].decode())
        blob, expires = f[b"b"], int(f[b"e"])
    except (KeyError, ValueError, UnicodeDecodeError):
        return
    if sig != state.sig:
        state.cache.clear()  # the policy changed: nothing made under the old one is kept
        state.sig = sig
    state.cache.put(key, blob, expires)


def _fork_handler(
    listener: socket.socket, p: Pending, state: CacheState, parent_fds: list[int]
) -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid:
        os.close(w)
        return pid, r
    code = 1
    try:
        os.close(r)
        for fd in parent_fds:
            os.close(fd)
        listener.close()
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        code = handle(p, state, w)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _read_request(conn: socket.socket) -> tuple[list[tuple[bytes, bytes]], int | None]:
    """Handler: the client's records and the pidfd it sent, bounded in size and time."""
    conn.settimeout(READ_TIMEOUT)
    buf, fds = b"", list[int]()
    while True:
        data, anc, _flags, _ = conn.recvmsg(wire.REQUEST_MAX, socket.CMSG_SPACE(4))
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4]))
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


def handle(p: Pending, state: CacheState | None = None, updates: int = -1) -> int:
    """Handler (forked per request): parse, respond exactly as in-process, reply; a new
    gssproxy credential goes to the parent's cache over `updates`."""
    from . import respond
    from .cli import ArgumentError, parse_args

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
        return 0
    waited = time.monotonic() - p.accepted
    a.deadline = max(0.0, a.deadline - waited)  # time spent queued counts
    signal.alarm(int(a.deadline + HANDLER_SLACK))
    resource.setrlimit(resource.RLIMIT_AS, (HANDLER_AS_MAX, HANDLER_AS_MAX))
    via = "daemon" if waited < 1 else f"daemon (queued {waited:.1f} s)"
    sig = policy_sig(a.policy)
    cache = state.cache if state is not None and state.sig == sig else ProxyCache()
    if mode == "key":
        reply, out = respond.key_reply(serial, text, a, pidfd, via, cache=cache)
    elif mode == "dry":
        reply, out = respond.dry_reply(text, a, pidfd, via, cache=cache)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    p.conn.sendall(reply.encode())
    if out is not None and out.cache_update is not None and updates >= 0:
        key, blob, expires = out.cache_update
        msg = b"".join(wire.record(t, v) for t, v in (
            (b"s", sig.encode()), (b"p", key.principal.encode()), (b"h", key.host.encode()),
            (b"k", key.socket.encode()), (b"b", blob), (b"e", b"%d" % expires)))  # fmt: skip
        os.write(updates, msg[: UPDATE_MAX + 1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
