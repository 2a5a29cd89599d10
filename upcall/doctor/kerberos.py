"""Just enough Kerberos wire format for doctor. Pure: no I/O.

- An AS-REQ (RFC 4120 5.4.1) for a client principal that does not exist: any KDC answers it
  with a KRB-ERROR (5.9.1) carrying its own time (`stime`, `susec`), which gives the clock skew
  without root, without NTP and without credentials.
- The first entry of a keytab (MIT's FILE format, version 0x0502): gssproxy 0.9 impersonates
  with it.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

from ..krb5.spnego import tlv  # one DER encoder

# --- DER ------------------------------------------------------------------------------------


def _ctx(n: int, body: bytes) -> bytes:
    return tlv(0xA0 | n, body)


def _int(v: int) -> bytes:
    return tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def _gstr(s: str) -> bytes:
    return tlv(0x1B, s.encode("utf-8"))


def _seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def _gtime(t: float) -> bytes:
    return tlv(0x18, time.strftime("%Y%m%d%H%M%SZ", time.gmtime(t)).encode())


def _principal(name_type: int, *names: str) -> bytes:
    return _seq(_ctx(0, _int(name_type)), _ctx(1, _seq(*(_gstr(n) for n in names))))


def as_req(client: str, realm: str, nonce: int, now: float) -> bytes:
    """AS-REQ for `client`@`realm` to krbtgt/realm, no pre-authentication, aes256/aes128."""
    body = _seq(
        _ctx(0, tlv(0x03, b"\x00\x00\x00\x00\x00")),  # KDCOptions: no flag
        _ctx(1, _principal(1, client)),  # NT-PRINCIPAL
        _ctx(2, _gstr(realm)),
        _ctx(3, _principal(2, "krbtgt", realm)),  # NT-SRV-INST
        _ctx(5, _gtime(now + 3600)),
        _ctx(7, _int(nonce & 0x7FFFFFFF)),
        _ctx(8, _seq(_int(18), _int(17))),
    )
    return tlv(0x6A, _seq(_ctx(1, _int(5)), _ctx(2, _int(10)), _ctx(4, body)))


def _read(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the TLV at `pos`."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first & 0x80:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    else:
        length = first
    if pos + length > len(data):
        raise ValueError("truncated DER value")
    return tag, pos, pos + length


def _fields(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """Context-tagged fields [n] of a SEQUENCE body -> (start, end) of the inner TLV."""
    out: dict[int, tuple[int, int]] = {}
    pos = start
    while pos < end:
        tag, s, e = _read(data, pos)
        if tag & 0xE0 == 0xA0:
            out[tag & 0x1F] = (s, e)
        pos = e
    return out


@dataclass(frozen=True)
class KrbError:
    stime: float  # the KDC's time, seconds since the epoch (susec included)
    error_code: int
    realm: str
    text: str


def _inner(data: bytes, span: tuple[int, int]) -> bytes:
    _, s, e = _read(data, span[0])
    return data[s:e]


def parse_krb_error(data: bytes) -> KrbError:
    """The KDC's reply as a KRB-ERROR; ValueError if it is anything else."""
    tag, s, e = _read(data, 0)
    if tag != 0x7E:  # [APPLICATION 30]
        raise ValueError(f"not a KRB-ERROR (tag 0x{tag:02x})")
    tag, s, e = _read(data, s)
    if tag != 0x30:
        raise ValueError("KRB-ERROR is not a SEQUENCE")
    f = _fields(data, s, e)
    if 4 not in f or 6 not in f:
        raise ValueError("KRB-ERROR without stime or error-code")
    stime = calendar.timegm(time.strptime(_inner(data, f[4]).decode("ascii"), "%Y%m%d%H%M%SZ"))
    usec = int.from_bytes(_inner(data, f[5]), "big", signed=True) if 5 in f else 0
    code = int.from_bytes(_inner(data, f[6]), "big", signed=True)
    realm = _inner(data, f[9]).decode("utf-8", "replace") if 9 in f else ""
    text = _inner(data, f[11]).decode("utf-8", "replace") if 11 in f else ""
    return KrbError(stime + usec / 1e6, code, realm, text)
