"""File descriptors over AF_UNIX sockets (SCM_RIGHTS): the one owner of how they are packed and
unpacked, for the thin client, the daemon, its handlers, keeper and prepared workers. Pure;
imports only _socket and _struct (the thin client pays for nothing more).
"""

import _socket
import _struct

Ancillary = list[tuple[int, int, bytes]]


def one(fd: int) -> Ancillary:
    """The ancillary data that passes `fd` (nothing for fd < 0)."""
    return [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _struct.pack("i", fd))] if fd >= 0 else []


def received(anc: Ancillary) -> list[int]:
    """Every fd that recvmsg's ancillary data carries: the receiver owns them all (and closes
    the ones it does not want)."""
    out: list[int] = []
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            out.extend(_struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4]))
    return out
