"""SPNEGO encoding (checked by pyspnego's independent parser) and the payload layout."""

from __future__ import annotations

import struct
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spnego._spnego import NegTokenInit, unpack_token

from upcall.kernel.payload import SpnegoMsg
from upcall.krb5.spnego import MechOID, encode_oid, neg_token_init


@pytest.mark.parametrize("mech", [MechOID.KRB5, MechOID.MS_KRB5])
@given(token=st.binary(min_size=0, max_size=70000))
def test_neg_token_init_parses_back(mech: MechOID, token: bytes) -> None:
    parsed = unpack_token(neg_token_init(mech, token))
    assert isinstance(parsed, NegTokenInit)
    assert parsed.mech_types == [mech.value]
    assert parsed.mech_token == token
    assert parsed.mech_list_mic is None


def test_oid_encoding_known_values() -> None:
    assert encode_oid("1.2.840.113554.1.2.2").hex() == "06092a864886f712010202"
    assert encode_oid("1.3.6.1.5.5.2").hex() == "06062b0601050502"


def test_payload_layout_is_the_kernel_struct() -> None:
    key, blob = bytes(range(32)), b"\x60\x82blob"
    data = SpnegoMsg(2, key, blob).pack()
    order = "<" if sys.byteorder == "little" else ">"
    assert data[:16] == struct.pack(order + "IIII", 2, 0, 32, len(blob))
    assert data[16:48] == key and data[48:] == blob and len(data) == 16 + 32 + len(blob)
    assert SpnegoMsg.unpack(data) == SpnegoMsg(2, key, blob)


def test_payload_with_wrong_length_is_rejected() -> None:
    data = SpnegoMsg(2, b"k" * 16, b"b").pack()
    with pytest.raises(ValueError):
        SpnegoMsg.unpack(data + b"\0\0\0\0")
