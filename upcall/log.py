"""The log sink: syslog (LOG_DAEMON) lines in key=value form for grep and scripts. Root, in the
client (which writes the lines a handler composed) and wherever the helper logs itself.

Where journald listens (/run/systemd/journal/socket), a line that comes with a journald entry
(journal.entry: CIFS_UPCALL_* fields, a MESSAGE_ID per reason class, composed by the handler)
goes to it instead; if journald does not take it, the line goes to syslog as before. Sending
is a datagram on a `_socket`: the thin client imports nothing more for it. The system calls go
through `posix` and `_stat`, not os (~1 ms of imports at every upcall)."""

import _stat
import posix
import sys
import syslog
import time

IDENT = "cifs-upcall"
_echo = False
_file: str | None = None
_debug = False
_journal: str | None = None  # journald's socket, if one listens
JOURNAL_SOCKET = "/run/systemd/journal/socket"


def setup(
    *, debug: bool, echo: bool, log_file: str | None = None, journal_socket: str = JOURNAL_SOCKET
) -> None:
    """Errors and the per-upcall summary by default; the trail too with -d."""
    global _echo, _file, _debug, _journal
    _echo, _file, _debug = echo, log_file, debug
    try:
        _journal = journal_socket if _stat.S_ISSOCK(posix.stat(journal_socket).st_mode) else None
    except OSError:
        _journal = None
    syslog.openlog(IDENT, syslog.LOG_PID, syslog.LOG_DAEMON)
    syslog.setlogmask(syslog.LOG_UPTO(syslog.LOG_DEBUG if debug else syslog.LOG_INFO))


# Values come from the network (GSS/KDC/gssproxy messages) and from the caller (host names,
# KRB5CCNAME): every code point that is not printable is escaped, C0 and C1 controls, line and
# paragraph separators (U+0085, U+2028, U+2029), CSI (U+009B) included, so nothing can end a log
# line early, fake another one or steer a terminal, and a NUL (which syslog(3) cannot take)
# never reaches it.


def _escape_char(c: str) -> str:
    if c.isprintable():
        return c
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def escape(s: str) -> str:
    """`s` with every non-printable code point written as a Python-style escape."""
    if s.isprintable():
        return s
    return "".join(_escape_char(c) for c in s)


def _quote(v: object) -> str:
    s = str(v)
    if s == "" or any(c in s for c in ' "=\t\n'):
        s = '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escape(s)


def kv(**fields: object) -> str:
    return " ".join(f"{k}={_quote(v)}" for k, v in fields.items() if v is not None)


def _to_journal(entry: bytes, path: str) -> bool:
    import _socket

    try:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        try:
            s.sendto(entry, path)
        finally:
            s.close()
    except OSError:
        from . import journal  # too large for a datagram: the memfd way (rare, heavier)

        return journal.send_encoded(entry, path)
    return True


def emit(priority: int, line: str, entry: bytes | None = None) -> None:
    """Never raises: a logging problem must not keep the key from being answered. `entry`:
    the line's journald entry (journal.entry), sent instead when journald listens."""
    line = escape(line)
    wants = _debug or priority <= syslog.LOG_INFO
    if not (entry and _journal and wants and _to_journal(entry, _journal)):
        try:  # noqa: SIM105 - contextlib costs the thin client ~3 ms of imports
            syslog.syslog(priority, line)
        except (ValueError, OSError):
            pass
    if _echo:
        print(f"{IDENT}: {line}", file=sys.stderr)
    if _file and (_debug or priority <= syslog.LOG_INFO):
        # Written by root to a path the administrator named in request-key.d: O_NOFOLLOW so a
        # symlink planted there cannot redirect it.
        try:
            flags = posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT | posix.O_NOFOLLOW
            fd = posix.open(_file, flags | posix.O_CLOEXEC, 0o640)
        except OSError:
            return
        try:
            with open(fd, "a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {IDENT}[{posix.getpid()}]: {line}\n")
        except OSError:
            pass
