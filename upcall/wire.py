"""The client <-> daemon protocol on the root-only socket. Pure; imports only _struct (struct.py,
its wrapper, costs the thin client ~0.15 ms).

Both directions are records `tag (1 byte) | length (4 bytes, big endian) | data`, so the thin
client needs no JSON or regex module, and a reader can bound every record before reading it.

client -> daemon, one message, the caller's pidfd attached (SCM_RIGHTS) when there is one:
    V "1"  M "key" | "dry"  S serial (decimal, "0" for a dry run)  D key description
    A one argument of the helper's command line (repeated, in order: the one parser decides)
daemon -> client:
    K  accepted: the daemon works on it (the client stops waiting for "a daemon at all")
    P  the payload to instantiate       X  exit status (decimal), last record
    L  a log line: priority digit, space, text (repeated; the client writes them)
    J  the journald entry of the line before it (encoded; sent when journald listens)
    O  text for the client's stdout (dry runs)   N  negative-key timeout (decimal)
    F  --log-file path   B  --payload-out path
"""

import _struct

VERSION = b"1"
REQUEST_MAX = 64 * 1024
REPLY_MAX = 256 * 1024
_HEAD = _struct.Struct(">cI")


def record(tag: bytes, data: bytes) -> bytes:
    """Pure: one record of the client-daemon protocol."""
    return _HEAD.pack(tag, len(data)) + data


def records(buf: bytes, limit: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Complete records in `buf`, and the incomplete rest. ValueError past `limit` bytes."""
    out: list[tuple[bytes, bytes]] = []
    pos = 0
    while len(buf) - pos >= _HEAD.size:
        tag, n = _HEAD.unpack_from(buf, pos)
        if n > limit:
            raise ValueError(f"record of {n} bytes (limit {limit})")
        if len(buf) - pos - _HEAD.size < n:
            break
        start = pos + _HEAD.size
        out.append((tag, buf[start : start + n]))
        pos = start + n
    return out, buf[pos:]


def request(mode: str, serial: int, description: str, argv: list[str]) -> bytes:
    """Client: the one message it sends the daemon (the pidfd travels beside it)."""
    parts = [record(b"V", VERSION), record(b"M", mode.encode()), record(b"S", b"%d" % serial)]
    parts.append(record(b"D", description.encode("utf-8", "surrogateescape")))
    parts.extend(record(b"A", a.encode("utf-8", "surrogateescape")) for a in argv)
    return b"".join(parts)


class Reply:
    """What answering one request comes to; made by the daemon (or in-process), carried out by
    the client (client.apply). A plain class: the thin client imports no dataclasses."""

    __slots__ = ("debug", "echo", "exit", "lines", "log_file", "negate_timeout", "payload",
                 "payload_out", "stdout")  # fmt: skip

    def __init__(self) -> None:
        self.payload: bytes | None = None  # instantiate the key with this (key mode)
        # (syslog priority, text, journald entry or b""), in order
        self.lines: list[tuple[int, str, bytes]] = []
        self.stdout = ""
        self.exit = 1
        self.negate_timeout = 5
        self.log_file: str | None = None
        self.payload_out: str | None = None
        self.debug = False
        self.echo = False

    def encode(self) -> bytes:
        out = []
        if self.payload is not None:
            out.append(record(b"P", self.payload))
        for prio, text, entry in self.lines:
            out.append(record(b"L", b"%d %s" % (prio, text.encode("utf-8", "replace"))))
            if entry:
                out.append(record(b"J", entry))
        if self.stdout:
            out.append(record(b"O", self.stdout.encode("utf-8", "replace")))
        out.append(record(b"N", b"%d" % self.negate_timeout))
        if self.log_file:
            out.append(record(b"F", self.log_file.encode("utf-8", "surrogateescape")))
        if self.payload_out:
            out.append(record(b"B", self.payload_out.encode("utf-8", "surrogateescape")))
        out.append(record(b"G", b"%d%d" % (self.debug, self.echo)))
        out.append(record(b"X", b"%d" % self.exit))
        return b"".join(out)

    @classmethod
    def decode(cls, recs: list[tuple[bytes, bytes]]) -> "Reply":
        """From the daemon's records (ValueError if malformed: the client then falls back)."""
        r = cls()
        seen_exit = False
        for tag, data in recs:
            if tag == b"P":
                r.payload = data
            elif tag == b"L":
                prio, _, text = data.partition(b" ")
                r.lines.append((int(prio), text.decode("utf-8", "replace"), b""))
            elif tag == b"J" and r.lines:
                r.lines[-1] = (*r.lines[-1][:2], data)
            elif tag == b"O":
                r.stdout = data.decode("utf-8", "replace")
            elif tag == b"N":
                r.negate_timeout = int(data)
            elif tag == b"F":
                r.log_file = data.decode("utf-8", "surrogateescape")
            elif tag == b"B":
                r.payload_out = data.decode("utf-8", "surrogateescape")
            elif tag == b"G" and len(data) == 2:
                r.debug, r.echo = data[:1] == b"1", data[1:] == b"1"
            elif tag == b"X":
                r.exit, seen_exit = int(data), True
        if not seen_exit:
            raise ValueError("reply without an exit status")
        return r


def pid_hint(description: str) -> int | None:
    """The pid= field, for the thin client to pin before the daemon parses the description
    strictly (request.py) and checks that the pinned process is the one it names."""
    for field in description.split(";"):
        if field.startswith("pid="):
            try:
                return int(field[4:], 16)
            except ValueError:
                return None
    return None
