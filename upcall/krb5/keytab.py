"""Read the first entry of an MIT keytab (file format 0x502/0x501), no Kerberos library.

Released gssproxy (0.9.1, 0.9.2) impersonates with the first entry of the service keytab,
whatever ``krb5_principal`` says, so ``cifs-upcall doctor`` and ``gssproxy-conf check
--keytab`` compare that entry with the client principal (one reader for both).
sssd's machine-password rotation rewrites /etc/krb5.keytab: check again after it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class KeytabError(ValueError):
    """Not a keytab, or one without a usable entry."""


@dataclass(frozen=True)
class KeytabEntry:
    principal: str  # name@REALM, components joined with "/"
    kvno: int
    enctype: int


def _counted(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 2 > len(data):
        raise KeytabError("truncated")
    (n,) = struct.unpack_from(">H", data, pos)
    end = pos + 2 + n
    if end > len(data):
        raise KeytabError("truncated")
    return data[pos + 2 : end], end


def first_entry(data: bytes) -> KeytabEntry:
    if len(data) < 2 or data[0] != 5 or data[1] not in (1, 2):
        raise KeytabError("not an MIT keytab (no 0x0501/0x0502 header)")
    if data[1] == 1:
        raise KeytabError("keytab format 0x0501 (native byte order) is not read here")
    pos = 2
    while pos + 4 <= len(data):
        (size,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if size < 0:  # a hole left by a deleted entry
            pos += -size
            continue
        if size == 0 or pos + size > len(data):
            break
        rec, p = data[pos : pos + size], 0
        pos += size
        (count,) = struct.unpack_from(">H", rec, p)
        realm, p = _counted(rec, p + 2)
        parts = []
        for _ in range(count):
            part, p = _counted(rec, p)
            parts.append(part.decode("utf-8", "replace"))
        p += 4 + 4  # name type, timestamp
        kvno8, enctype = struct.unpack_from(">BH", rec, p)
        p += 3
        _key, p = _counted(rec, p)
        kvno = struct.unpack_from(">I", rec, p)[0] if p + 4 <= len(rec) else kvno8
        return KeytabEntry(f"{'/'.join(parts)}@{realm.decode()}", kvno, enctype)
    raise KeytabError("no entries")


def read_first_entry(path: str) -> KeytabEntry:
    with open(path, "rb") as f:
        return first_entry(f.read())
