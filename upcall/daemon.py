"""`cifs-upcall serve`: the warm daemon behind the thin client. Root, host namespaces.

The parent imports everything once and then only accepts, queues and forks: it is
single-threaded (forking from threads is unsafe, and a worker's setns(user) needs a single
thread) and makes no GSSAPI call (gssproxy's interposer reads its environment at libgssapi's
first call, which must happen in each proxy worker). Each request goes to a handler of its own
(handler.py), which answers exactly as the in-process path does and exits: one spare handler,
forked while no other handler runs, waits with its workers prepared; under load one is forked
per request. Handlers reach the parent's gssproxy credential cache over their channel
(channel.py); the parent answers lookups at once and never waits on a handler.

Only uid 0 peers are served (SO_PEERCRED): the socket lives in a root-only directory, and
request-key runs the client as root. Concurrency is bounded (--max-workers); connections
beyond it are accepted and acknowledged, then queued.
"""

from __future__ import annotations

import argparse
import contextlib
import os
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

from . import fdpass, handler, keeper, log, wire
from .channel import HANDOFF, UPDATE_MAX, Warmth, on_warm
from .client import DEFAULT_SOCKET, clean_environment
from .handler import Pending

LISTEN_FD = 3  # systemd socket activation: the first passed fd
QUEUE_MAX = 1024
CPUS = os.cpu_count() or 1
SPARE_WHILE_ACTIVE = max(1, CPUS - 1)  # the spare is made only while fewer handlers run


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
    Warmth().warm(None, None)  # the default policy and /etc/krb5.conf, parsed once here


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
    (up to max_workers at once; one spare handler waits, forked ahead), warm what handlers
    parsed. The gssproxy credential cache is the keeper's (keeper.py), forked first."""
    queue = queue if queue is not None else deque()
    active: dict[int, Handler] = {}  # pid -> handler serving a request
    chans: dict[int, Handler] = {}  # channel fd -> handler, while its channel is open
    cache = keeper.start([listener])
    warmth = Warmth()
    spare: Handler | None = None
    served = 0
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    while not exit_after or served < exit_after or active or queue:
        _reap(active)
        while queue and len(active) < max_workers:
            p = queue.popleft()
            others = [*active.values(), *chans.values()]
            h, spare = spare or _fork_handler(listener, others, cache), None
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
            spare = _fork_handler(listener, others, cache, rehearse=warmth.last, proxy=warmth.proxy)
        lfd = listener.fileno()
        wait = [lfd] if wanted else []
        exits = [h.pidfd for h in active.values() if h.pidfd >= 0]
        ready, _, _ = select.select([*wait, *chans, *exits], [], [], 0.05 if active else 1.0)
        for fd in ready:
            if fd in chans:
                _on_channel(chans, fd, warmth)  # (an exit is reaped at the top of the loop)
        if lfd in ready:
            _accept(listener, queue)
    if spare is not None:
        _discard(spare, active)
    while active:
        _reap(active)
        time.sleep(0.01)
    cache.stop()
    return 0


def _hand_over(h: Handler, p: Pending, busy: bool) -> bool:
    """Parent: the connection, when it was accepted, and whether every CPU already has a
    handler (then the handler runs its steps in turn instead of overlapping them)."""
    try:
        h.chan.sendmsg([HANDOFF.pack(p.accepted, busy)], fdpass.one(p.conn.fileno()))
    except OSError:
        return False
    return True


def _discard(h: Handler, active: dict[int, Handler]) -> None:
    """Parent: let a handler that has no request go (EOF makes it exit); _reap collects it."""
    h.chan.close()
    active[h.pid] = h


def _on_channel(chans: dict[int, Handler], fd: int, warmth: Warmth) -> None:
    """Parent: one message from a handler: what to warm."""
    h = chans[fd]
    try:
        data = h.chan.recv(UPDATE_MAX + 1)
    except OSError:
        data = b""
    if not data:
        del chans[fd]
        h.chan.close()
        return
    if len(data) <= UPDATE_MAX:
        on_warm(data, warmth)


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
    listener: socket.socket, others: list[Handler], cache: keeper.Keeper,
    rehearse: tuple[str | None, str | None] | None = None, proxy: str | None = None,
) -> Handler:  # fmt: skip
    """Parent: a handler waiting for its connection, with its local worker (and unless
    `proxy` is None a gssproxy worker, told the socket it will most likely use) already
    forked; `rehearse` (the policy and host krb5.conf the last request used) for a spare,
    not for one forked for a waiting request."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    kchan = cache.channel()  # its own channel to the keeper
    pid = os.fork()
    if pid:
        theirs.close()
        if kchan is not None:
            kchan.close()
        return Handler(pid, ours, os.pidfd_open(pid))
    code = 1
    try:
        ours.close()
        cache.ctl.close()
        for h in others:  # the other handlers' channels and pidfds are not this one's
            h.chan.close()
            if h.pidfd >= 0:
                with contextlib.suppress(OSError):
                    os.close(h.pidfd)
        listener.close()
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        code = handler.main(theirs, kchan, rehearse, proxy)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
