"""The cache keeper: the one process that holds the daemon's gssproxy credentials. Root, host
namespaces.

Forked by the daemon's parent when it starts serving, before any credential exists, and
never forked from: handlers and their workers (whose local ones run a caller's code) are forked
from the parent, so what only the keeper's memory holds (other users' principals and their
gssproxy-encrypted credentials, and freed copies of them: Python does not zero memory) reaches
none of them. Single-threaded; each handler gets a channel of its own (the parent makes the
pair and passes the keeper its end over the control socket); lookups are answered at once
(channel.on_message), nothing here waits on a handler. Ends when the parent's control socket
closes.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
from dataclasses import dataclass

from . import fdpass
from .channel import UPDATE_MAX, CacheState, on_message
from .sources.proxy_cache import ProxyCache

CHANNELS_MAX = 4096  # a handler's channel closes with it; more open at once is a bug


@dataclass
class Keeper:
    """Parent: the keeper process and the parent's end of its control socket."""

    pid: int
    ctl: socket.socket

    def channel(self) -> socket.socket | None:
        """Parent: a new cache channel for the handler about to be forked (its end; the
        keeper got the other over the control socket), or None if the keeper is gone (the
        handler then works without a cache)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.ctl.sendmsg([b"c"], fdpass.one(theirs.fileno()))
        except OSError:
            ours.close()
            return None
        finally:
            theirs.close()
        return ours

    def stop(self) -> None:
        """Parent: EOF on the control socket ends the keeper; reaped if it has exited."""
        self.ctl.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, os.WNOHANG)


def start(close: list[socket.socket]) -> Keeper:
    """Parent, before it forks any handler: fork the keeper (which closes `close`: the
    listener and anything else of the parent's it must not hold)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid:
        theirs.close()
        return Keeper(pid, ours)
    code = 1
    try:
        ours.close()
        for s in close:
            s.close()
        code = main(theirs)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def main(ctl: socket.socket) -> int:
    """Keeper: serve the cache over every channel the parent passes, until it goes away."""
    state = CacheState(ProxyCache())
    chans: dict[int, socket.socket] = {}
    cfd = ctl.fileno()
    while True:
        ready, _, _ = select.select([cfd, *chans], [], [])
        for fd in ready:
            if fd == cfd:
                if not _take_channel(ctl, chans):
                    return 0
            else:
                _answer(chans, fd, state)


def _take_channel(ctl: socket.socket, chans: dict[int, socket.socket]) -> bool:
    """Keeper: the handler channel the parent sent; False when the parent has gone."""
    data, anc, _flags, _ = ctl.recvmsg(16, socket.CMSG_SPACE(4))
    fds = fdpass.received(anc)
    if not data:
        return False
    for fd in fds:
        if len(chans) < CHANNELS_MAX:
            chans[fd] = chan = socket.socket(fileno=fd)
            chan.setblocking(False)  # an answer a handler does not read is dropped, not waited on
        else:
            os.close(fd)
    return True


def _answer(chans: dict[int, socket.socket], fd: int, state: CacheState) -> None:
    chan = chans[fd]
    try:
        data = chan.recv(UPDATE_MAX + 1)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if not data:
        del chans[fd]
        chan.close()
        return
    answer = on_message(data, state) if len(data) <= UPDATE_MAX else None
    if answer is not None:
        with contextlib.suppress(OSError):
            chan.send(answer)
