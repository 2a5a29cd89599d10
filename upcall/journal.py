"""journald's native protocol, written with the socket module (no python-systemd).

Runs in the helper (root, host namespaces, after the upcall) and in doctor. One entry is one
datagram to /run/systemd/journal/socket holding `NAME=value\\n` lines; a value containing a
newline is sent as `NAME\\n<64-bit little-endian length><bytes>\\n`. An entry too large for a
datagram goes in a sealed memfd passed with SCM_RIGHTS (journald reads the fd instead).

Field names: uppercase ASCII letters, digits and `_`, not starting with `_` or a digit (journald
reserves `_` for trusted fields it adds itself), at most 64 characters.

MESSAGE_IDs: one per class of outcome, so `journalctl -x` shows the catalog entry
(upcall/cifs-upcall.catalog) for it and `journalctl MESSAGE_ID=...` selects the class.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import stat
import struct
from collections.abc import Mapping

from . import fdpass
from .errors import Reason

SOCKET = "/run/systemd/journal/socket"
_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")

# One MESSAGE_ID per class of outcome; the catalog file carries the same ids.
MESSAGE_IDS: dict[str, str] = {
    "ok": "8b0c8f3e2a6e4c1b9d4f0a7e5c3b2a10",
    "refused": "3f6d1c2b8a9e4f70b5c4d3e2f1a0b911",  # not a key cifs.ko made, or malformed
    "setup": "c2a4e6f8091b4d3c8e7f6a5b4c3d2e12",  # arguments, installation, policy file
    "caller": "5a7c9e1b3d2f4a6c8e0b1d3f5a7c9e13",  # caller gone, namespaces, privilege drop
    "credentials": "9e8d7c6b5a4f4e3d2c1b0a9f8e7d6c14",  # no/expired ticket, keytab
    "kdc": "1b3d5f7a9c2e4b6d8f0a2c4e6b8d0f15",  # KDC unreachable/refused, skew, unknown SPN
    "proxy": "6c8e0a2b4d6f4a8c0e2b4d6f8a0c2e16",  # gssproxy not there or no service
    "impersonation": "d4f6a8c0e2b44d6f8a0c2e4b6d8f0a17",  # S4U2Self / S4U2Proxy refused
    "internal": "7e9a1c3e5b7d4f9a1c3e5b7d9f1a3c18",  # GSS failure, deadline, keyring, bugs
}

_CLASS: dict[Reason, str] = {
    Reason.FOREIGN_KEY: "refused",
    Reason.BAD_DESCRIPTION: "refused",
    Reason.UNSUPPORTED_VERSION: "refused",
    Reason.UNSUPPORTED_MECH: "refused",
    Reason.BAD_ARGUMENTS: "setup",
    Reason.BAD_POLICY: "setup",
    Reason.POLICY: "setup",
    Reason.KEY_UNAVAILABLE: "caller",
    Reason.CALLER_GONE: "caller",
    Reason.NAMESPACE: "caller",
    Reason.PRIVILEGE_DROP: "caller",
    Reason.NO_CREDENTIALS: "credentials",
    Reason.EXPIRED_CREDENTIALS: "credentials",
    Reason.KEYTAB: "credentials",
    Reason.KDC_UNREACHABLE: "kdc",
    Reason.KDC_REFUSED: "kdc",
    Reason.CLOCK_SKEW: "kdc",
    Reason.UNKNOWN_SERVER: "kdc",
    Reason.PROXY_UNAVAILABLE: "proxy",
    Reason.PROXY_NO_SERVICE: "proxy",
    Reason.S4U2SELF_REFUSED: "impersonation",
    Reason.S4U2PROXY_REFUSED: "impersonation",
    Reason.GSS_FAILURE: "internal",
    Reason.DEADLINE: "internal",
    Reason.KEYRING: "internal",
    Reason.INTERNAL: "internal",
}


def message_id(reason: str | None) -> str:
    """The MESSAGE_ID for an outcome: "ok" for None, else the class of the reason code."""
    if reason is None:
        return MESSAGE_IDS["ok"]
    try:
        return MESSAGE_IDS[_CLASS[Reason(reason)]]
    except (ValueError, KeyError):
        return MESSAGE_IDS["internal"]


def encode(fields: Mapping[str, object]) -> bytes:
    """The datagram for one entry. Pure. Raises ValueError on an invalid field name; None
    values are left out; a NUL or newline in a value is carried by the binary form."""
    out = bytearray()
    for name, value in fields.items():
        if value is None:
            continue
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid journal field name {name!r}")
        data = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
        key = name.encode("ascii")
        if b"\n" in data or b"\0" in data:
            out += key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key + b"=" + data + b"\n"
    return bytes(out)


def available(path: str = SOCKET) -> bool:
    """Whether a journald listens here (the socket exists; sending proves the rest)."""
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _send_memfd(sock: socket.socket, data: bytes, path: str) -> None:
    fd = os.memfd_create("cifs-upcall-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.write(fd, data)
        seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        sock.sendmsg([], fdpass.one(fd), 0, path)
    finally:
        os.close(fd)


def send(fields: Mapping[str, object], path: str = SOCKET) -> bool:
    """Send one entry; True if journald took it. Never raises (the key must still be answered)."""
    try:
        data = encode(fields)
    except ValueError:
        return False
    return send_encoded(data, path)


def send_encoded(data: bytes, path: str = SOCKET) -> bool:
    """Send an encoded entry (a datagram, or a sealed memfd when too large). Never raises."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto(data, path)
            except OSError as e:
                if e.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                    raise
                _send_memfd(sock, data, path)
    except OSError:
        return False
    return True


def fields_for(
    *,
    priority: int,
    message: str,
    outcome: str,
    reason: str | None = None,
    **extra: object,
) -> dict[str, object]:
    """The structured entry of one upcall: the MESSAGE (the same key=value line syslog gets),
    syslog compatibility fields, and CIFS_UPCALL_<NAME> for each of `extra` (lower-case
    names: key, source, principal, spn, server, uid, impersonated, ms, hint, error...)."""
    f: dict[str, object] = {
        "MESSAGE": message,
        "MESSAGE_ID": message_id(reason if outcome != "ok" else None),
        "PRIORITY": priority,
        "SYSLOG_IDENTIFIER": "cifs-upcall",
        "SYSLOG_FACILITY": 3,  # daemon, as the syslog line
        "SYSLOG_PID": os.getpid(),
        "CIFS_UPCALL_OUTCOME": outcome,
        "CIFS_UPCALL_REASON": reason,
    }
    for k, v in extra.items():
        if v is None or v == "":
            continue
        if isinstance(v, bool):
            v = "yes" if v else "no"
        f[f"CIFS_UPCALL_{k.upper()}"] = v
    return f


def entry(priority: int, line: str, *, outcome: str, reason: str | None = None,
          **extra: object) -> bytes:  # fmt: skip
    """The encoded journald entry for one log line (composed by the handler, sent by the
    client). Text values are escaped as the line is (GSS messages carry NULs)."""
    from .log import escape

    clean = {k: escape(v) if isinstance(v, str) else v for k, v in extra.items()}
    fields = fields_for(priority=priority, message=escape(line), outcome=outcome,
                        reason=reason, **clean)  # fmt: skip
    fields.pop("SYSLOG_PID", None)  # journald adds the sender's _PID itself
    try:
        return encode(fields)
    except ValueError:
        return b""
