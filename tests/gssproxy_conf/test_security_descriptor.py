"""The RBCD descriptor, byte for byte against Samba's own NDR encoder (python3-samba)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gssproxy_conf.ad import ldif
from gssproxy_conf.ad import security_descriptor as sd

security = pytest.importorskip("samba.dcerpc.security")
ndr = pytest.importorskip("samba.ndr")

DOMAIN = "S-1-5-21-3807959304-1175216678-3803665181"
RIGHTS = "CCDCLCSWRPWPDTLOCRSDRCWDWO"
sids = st.builds(
    lambda auth, subs: "-".join(["S-1", str(auth), *map(str, subs)]),
    st.sampled_from([5, 1, 0, 16]),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=8),
)


def samba_bytes(sddl: str) -> bytes:
    desc = security.descriptor.from_sddl(sddl, security.dom_sid(DOMAIN))
    return bytes(ndr.ndr_pack(desc))


def test_issue_example_matches_samba() -> None:
    sid = f"{DOMAIN}-1105"
    sddl = f"O:BAD:(A;;{RIGHTS};;;{sid})"
    ours = sd.encode(sd.rbcd([sid]))
    assert sd.to_sddl(sd.rbcd([sid])) == sddl
    assert ours == samba_bytes(sddl)
    assert len(ours) == 80


def test_samba_tool_rights_order_is_the_same_mask() -> None:
    # samba-tool delegation add-principal writes the letters in another order
    sddl = f"O:BAD:(A;;RPWPCRCCDCLCLORCWOWDSDDTSW;;;{DOMAIN}-1105)"
    assert sd.encode(sd.rbcd([f"{DOMAIN}-1105"])) == samba_bytes(sddl)


@settings(max_examples=60, deadline=None)
@given(st.lists(sids, min_size=1, max_size=5, unique=True))
def test_any_sid_list_matches_samba(sid_list: list[str]) -> None:
    desc = sd.rbcd(sid_list)
    blob = sd.encode(desc)
    assert blob == samba_bytes(sd.to_sddl(desc))
    assert sd.decode(blob) == desc
    # and Samba reads our bytes back to the same SIDs
    parsed = ndr.ndr_unpack(security.descriptor, blob)
    assert [str(a.trustee) for a in parsed.dacl.aces] == sid_list
    assert all(a.access_mask == sd.RBCD_MASK for a in parsed.dacl.aces)


def test_ldif_value_is_the_descriptor(rbcd_example) -> None:
    mods = [m for m in ldif.parse(ldif.render(rbcd_example)) if m.attr == ldif.RBCD_ATTR]
    assert mods
    for m in mods:
        desc = sd.decode(m.values[0])
        assert [a.sid for a in desc.dacl] == [
            rbcd_example.client.sid,
            *rbcd_example.ad.extra_rbcd_sids,
        ]
        assert base64.b64encode(m.values[0]).decode() in ldif.render(rbcd_example)


@pytest.mark.parametrize("bad", ["S-1", "S-1-5-x", "s-1-5-21", "S-1-281474976710656-1"])
def test_bad_sids_rejected(bad: str) -> None:
    with pytest.raises(sd.DescriptorError):
        sd.encode_sid(bad)


def test_decode_rejects_garbage() -> None:
    with pytest.raises(sd.DescriptorError):
        sd.decode(b"\x01\x00\x04")
    with pytest.raises(sd.DescriptorError):
        sd.decode(sd.encode(sd.rbcd([f"{DOMAIN}-1"]))[:-3])
