"""SPNEGO NegTokenInit (RFC 4178) around a krb5 GSS token, DER-encoded by hand. Pure.

    [APPLICATION 0] { OID 1.3.6.1.5.5.2, [0] NegTokenInit SEQUENCE {
        [0] mechTypes SEQUENCE { OID mech }, [2] mechToken OCTET STRING } }
Exactly one mechType, the one the server offered (the kernel tells us: krb5 or MS-krb5), and no
mechListMIC: the kernel makes a single round trip and never sees the server's answer. The inner
token keeps the standard krb5 OID in its RFC 1964 framing, as Windows and Samba expect.
"""

from __future__ import annotations

import enum


class MechOID(enum.Enum):
    SPNEGO = "1.3.6.1.5.5.2"
    KRB5 = "1.2.840.113554.1.2.2"
    MS_KRB5 = "1.2.840.48018.1.2.2"


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def encode_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, bytes(out))


def neg_token_init(mech: MechOID, mech_token: bytes) -> bytes:
    """Pure: the SPNEGO NegTokenInit the kernel hands the server, wrapping the krb5 token."""
    mech_types = tlv(0xA0, tlv(0x30, encode_oid(mech.value)))
    token = tlv(0xA2, tlv(0x04, mech_token))
    init = tlv(0xA0, tlv(0x30, mech_types + token))
    return tlv(0x60, encode_oid(MechOID.SPNEGO.value) + init)
