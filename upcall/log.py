"""syslog (LOG_DAEMON) and one summary line per upcall, in key=value form for grep and scripts."""

from __future__ import annotations

import os
import sys
import syslog
import time

TYPE_CHECKING = False  # the thin client imports this module: no typing at start

if TYPE_CHECKING:
    from .pipeline import Outcome

IDENT = "cifs-upcall"
_echo = False
_file: str | None = None
_debug = False


def setup(*, debug: bool, echo: bool, log_file: str | None = None) -> None:
    """Errors and the per-upcall summary by default; the trail too with -d."""
    global _echo, _file, _debug
    _echo, _file, _debug = echo, log_file, debug
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


def emit(priority: int, line: str) -> None:
    """Never raises: a logging problem must not keep the key from being answered."""
    line = escape(line)
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
            fd = os.open(_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
        except OSError:
            return
        try:
            with os.fdopen(fd, "a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {IDENT}[{os.getpid()}]: {line}\n")
        except OSError:
            pass


def summary(out: Outcome, serial: int | None) -> str:
    req = out.request
    common = dict(
        key=serial,
        host=req.host,
        sec=req.sec.value,
        uid=out.uid,
        pid=req.pid,
        target=req.upcall_target.value,
    )
    if out.ok and out.token:
        return kv(
            outcome="ok",
            source=out.source,
            principal=out.principal,
            spn=out.spn,
            impersonated="yes" if out.token.impersonated else "no",
            **common,
            ms=round(out.seconds * 1000),
        )
    assert out.reason is not None
    return kv(
        outcome="failed",
        reason=out.reason.value,
        **common,
        ms=round(out.seconds * 1000),
        error=out.message,
        hint=out.hint,
    )


def outcome(out: Outcome, serial: int | None) -> None:
    for step in out.trail:
        emit(syslog.LOG_DEBUG, kv(**step))
    emit(syslog.LOG_INFO if out.ok else syslog.LOG_ERR, summary(out, serial))
