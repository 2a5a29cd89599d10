"""A handler of the warm daemon: one request, then exit. Root, host namespaces.

Forked by the parent (daemon.py) before its request when a CPU is free (a spare: it forks and
prepares its workers, rehearses a request, then waits on its channel), else for a waiting
request. It reads the client's request and pidfd, answers exactly as the in-process path does
(respond.py, whose workers cross the boundary of worker/boundary.py), sends the reply, closes
the connection, and reports what the parent should keep (channel.py). Each handler has an
address-space limit and an alarm past the upcall's deadline.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from . import fdpass, wire
from .channel import HANDOFF, CacheLink, ChannelLink, policy_sig
from .pipeline import PreparedWorkers, SerialWorkers, Workers
from .policy.rules import Step

if TYPE_CHECKING:
    from .sources.local import LocalPlan
    from .sources.proxy import ProxyPlan
    from .worker.child import Result

READ_TIMEOUT = 2.0  # for the client's request to arrive once connected
HANDLER_AS_MAX = 1 << 30  # address space of one request's handler and its workers
HANDLER_SLACK = 10  # seconds past the upcall deadline before a handler's alarm kills it


@dataclass
class Pending:
    conn: socket.socket
    accepted: float  # time.monotonic() (CLOCK_MONOTONIC: the same in every process)


def main(
    chan: socket.socket, cache: socket.socket | None,
    rehearse: tuple[str | None, str | None] | None, proxy: str | None,
) -> int:  # fmt: skip
    """Handler: prepare its workers, rehearse, wait for the connection on `chan` (from the
    parent), serve it with the keeper's cache over `cache`."""
    workers = PreparedWorkers(proxy=proxy, rehearse=rehearse is not None)
    if rehearse is not None:
        _rehearse(*rehearse)
    try:
        data, anc, _flags, _ = chan.recvmsg(64, socket.CMSG_SPACE(4))
        fds = fdpass.received(anc)
        if len(data) != HANDOFF.size or len(fds) != 1:
            return 0  # the parent let us go (EOF) or is not making sense
        accepted, busy = HANDOFF.unpack(data)
        workers.overlap = not busy
        conn = socket.socket(fileno=fds[0])
        return handle(Pending(conn, accepted), ChannelLink(chan, cache), workers)
    finally:
        workers.close()


# A documentation address, uid 65534, and as the caller the spare handler itself (_rehearse):
# nothing of anyone's is read.
REHEARSAL = "ver=0x2;host=rehearsal.invalid;ip4=192.0.2.1;sec=krb5;uid=0xfffe;creduid=0xfffe"


class _Rehearsal(SerialWorkers):
    """The rehearsal's workers: nothing is forked. Each step's result is a worker's line,
    made and parsed as a real one is (child.rehearsed): with `fail_first` the first step
    fails and any later one gives a token (a repeat impersonated access: own credentials,
    then gssproxy), else the first gives one (an own ticket)."""

    def __init__(self, fail_first: bool) -> None:
        self._fail = fail_first

    def run(self, step: Step, plan: LocalPlan | ProxyPlan, budget: float, what: str) -> Result:
        from .sources import local, proxy
        from .sources.base import SourceKind, rehearsal_result
        from .worker import child

        fail, self._fail = self._fail, False
        kind = SourceKind.PROXY if step.is_proxy else SourceKind.CCACHE
        work = proxy.run if step.is_proxy else local.run  # what give() would pickle
        return child.rehearsed(work, plan, partial(rehearsal_result, kind, fail), what)


def _rehearse(policy: str | None = None, krb5: str | None = None) -> None:
    """Spare handler, before it has a request: run a request's code once on REHEARSAL (with
    the policy and host krb5.conf the last request used) and workers whose results are
    made and parsed on the spot (_Rehearsal: a failure then a token, then a token first),
    so that the copy-on-write faults a forked handler takes on its first run (~850 pages
    here, ~2 ms under this hypervisor) are paid before anyone waits. Reads root's policy
    and krb5.conf, NSS for uid 65534 and its own /proc entry, builds replies, sends and
    logs nothing."""
    from . import respond
    from .cli import parse_args

    extra = [*(["--policy", policy] if policy else []),
             *(["--host-krb5-config", krb5] if krb5 else [])]  # fmt: skip
    # its own pid as the caller's: the caller's way (pin, /proc, namespaces, the local plan)
    # is rehearsed on a process of root's own that is in the host's namespaces already
    text = f"{REHEARSAL};pid=0x{os.getpid():x}"
    a = parse_args([*extra, "--dry-run", text, "--json"])
    for fail_first in (True, False):
        workers = _Rehearsal(fail_first)
        with contextlib.suppress(Exception):
            respond.dry_reply(text, a, None, "daemon", workers=workers)[0].encode()


def _read_request(conn: socket.socket) -> tuple[list[tuple[bytes, bytes]], int | None]:
    """Handler: the client's records and the pidfd it sent, bounded in size and time."""
    conn.settimeout(READ_TIMEOUT)
    buf, fds = b"", list[int]()
    while True:
        data, anc, _flags, _ = conn.recvmsg(wire.REQUEST_MAX, socket.CMSG_SPACE(4))
        fds.extend(fdpass.received(anc))
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


CLIENT_GONE_BOUND = 0.1  # seconds the handler holds back its after-reply work for the client


def _client_gone(conn: socket.socket) -> None:
    """Handler, after its reply: wait (at most CLIENT_GONE_BOUND) until the client has closed
    its end, i.e. has carried the reply out (instantiated the key) and is exiting. What
    follows (the follow-up read, the workers' and this process's teardown, the next spare's
    fork in the parent) costs CPU the client's last steps, and request-key, should have."""
    end = time.monotonic() + CLIENT_GONE_BOUND
    try:
        while (left := end - time.monotonic()) > 0:
            conn.settimeout(left)
            if not conn.recv(4096):  # it shut down its side after the request: only EOF is due
                return
    except OSError:
        pass  # a timeout or a reset: go on either way


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
    p.conn.shutdown(socket.SHUT_WR)  # the client reads to EOF: give it now
    _client_gone(p.conn)
    p.conn.close()
    update = out.cache_later() if out is not None and out.cache_later is not None else None
    if update is not None and link is not None:
        link.put(sig, *update)
    if link is not None:
        link.warm(a.policy, a.host_krb5_config)  # after the reply: off the request's path
    child.finish()
    return 0
