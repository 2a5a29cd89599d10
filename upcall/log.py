"""syslog (LOG_DAEMON) and one summary line per upcall, in key=value form for grep and scripts.

Where journald listens (/run/systemd/journal/socket), each line goes to it instead as one
structured entry (upcall/journal.py: CIFS_UPCALL_* fields, a MESSAGE_ID per reason class), with
the same text as MESSAGE; if journald does not take it, the line goes to syslog as before.
"""

from __future__ import annotations

import contextlib
import os
import sys
import syslog
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from . import journal

if TYPE_CHECKING:
    from .pipeline import Outcome

IDENT = "cifs-upcall"
_echo = False
_file: str | None = None
_debug = False
_journal: str | None = None  # journald's socket, if one listens


def setup(
    *,
    debug: bool,
    echo: bool,
    log_file: str | None = None,
    journal_socket: str = journal.SOCKET,
) -> None:
    """Errors and the per-upcall summary by default; the trail too with -d."""
    global _echo, _file, _debug, _journal
    _echo, _file, _debug = echo, log_file, debug
    _journal = journal_socket if journal.available(journal_socket) else None
    syslog.openlog(IDENT, syslog.LOG_PID, syslog.LOG_DAEMON)
    syslog.setlogmask(syslog.LOG_UPTO(syslog.LOG_DEBUG if debug else syslog.LOG_INFO))


# Values come from the network (GSS/KDC/gssproxy messages) and from the caller (host names):
# control characters are escaped so nothing can end a log line early or fake another one, and
# a NUL (which syslog(3) cannot take) never reaches it.
_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F)}


def _quote(v: object) -> str:
    s = str(v)
    if s == "" or any(c in s for c in ' "=\t\n'):
        s = '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s.translate(_ESCAPES)


def kv(**fields: object) -> str:
    return " ".join(f"{k}={_quote(v)}" for k, v in fields.items() if v is not None)


def emit(priority: int, line: str, fields: Mapping[str, object] | None = None) -> None:
    """Never raises: a logging problem must not keep the key from being answered.
    `fields`: journal.fields_for(...) of this line, for journald; else a plain entry."""
    line = line.translate(_ESCAPES)
    if _journal is None or (_debug is False and priority > syslog.LOG_INFO):
        sent = False
    else:
        # the same escaping as the line: GSS messages carry NULs, names may carry newlines
        entry = {k: v.translate(_ESCAPES) if isinstance(v, str) else v
                 for k, v in (fields or {}).items()}  # fmt: skip
        entry.update(MESSAGE=line, PRIORITY=priority, SYSLOG_IDENTIFIER=IDENT)
        entry.setdefault("SYSLOG_FACILITY", 3)
        entry.setdefault("SYSLOG_PID", os.getpid())
        sent = journal.send(entry, _journal)
    if not sent:
        with contextlib.suppress(ValueError, OSError):
            syslog.syslog(priority, line)
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


def journal_fields(out: Outcome, serial: int | None, priority: int) -> dict[str, object]:
    """The CIFS_UPCALL_* fields of one upcall's journald entry."""
    req = out.request
    return journal.fields_for(
        priority=priority,
        message="",
        outcome="ok" if out.ok else "failed",
        reason=out.reason.value if out.reason else None,
        key=serial,
        source=out.source,
        principal=out.principal,
        spn=out.spn,
        server=req.host,
        uid=out.uid,
        caller_pid=req.pid,
        target=req.upcall_target.value,
        impersonated=bool(out.token and out.token.impersonated) if out.ok else None,
        ms=round(out.seconds * 1000),
        error=out.message if not out.ok else None,
        hint=out.hint if not out.ok else None,
    )


def outcome(out: Outcome, serial: int | None) -> None:
    for step in out.trail:
        emit(syslog.LOG_DEBUG, kv(**step))
    prio = syslog.LOG_INFO if out.ok else syslog.LOG_ERR
    emit(prio, summary(out, serial), journal_fields(out, serial, prio))
