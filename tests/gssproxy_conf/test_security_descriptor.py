"""The RBCD descriptor, byte for byte against Samba's own NDR encoder (python3-samba)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gssproxy_conf.ad import ldif
from gssproxy_conf.ad import security_descriptor as sd

from .conftest import DATA

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


def test_ldif_merges_with_the_current_descriptor(rbcd_example) -> None:
    """FS1$ already trusts another client (-1200): the new descriptor keeps that ACE."""
    from gssproxy_conf.ad import directory
    from gssproxy_conf.ad.changes import change_set

    state = directory.parse((DATA / "rbcd.current.ldif").read_text())
    text = ldif.render(change_set([rbcd_example]), state, rbcd_example.base_dn)
    mods = {m.dn: m for m in ldif.parse(text) if m.attr == directory.RBCD_ATTR}
    fs1 = sd.decode(mods["CN=FS1,OU=Domain Controllers,DC=example,DC=com"].values[0])
    assert [a.sid for a in fs1.dacl] == [f"{DOMAIN}-1200", rbcd_example.client.sid]
    other = sd.decode(mods["CN=FILESRV7,OU=Servers,DC=example,DC=com"].values[0])
    assert [a.sid for a in other.dacl] == [rbcd_example.client.sid]


def test_sddl_as_samba_prints_it_reads_back() -> None:
    sddl = f"O:BAD:(A;;RPWPCRCCDCLCLORCWOWDSDDTSW;;;{DOMAIN}-1106)(A;;0xf01ff;;;{DOMAIN}-1104)"
    desc = sd.from_sddl(sddl)
    assert desc == sd.rbcd([f"{DOMAIN}-1106", f"{DOMAIN}-1104"])
    assert sd.with_trustee(desc, f"{DOMAIN}-1104") is None
    for bad in ("O:BAG:DUD:(A;;RP;;;BA)", "O:BAD:P(A;;RP;;;BA)", "O:BAD:(OA;;RP;;;BA)",
                "O:BAD:(A;CI;RP;;;BA)", "O:BAD:(A;;GA;;;BA)"):  # fmt: skip
        with pytest.raises(sd.DescriptorError):
            sd.from_sddl(bad)


@pytest.mark.parametrize("bad", ["S-1", "S-1-5-x", "s-1-5-21", "S-1-281474976710656-1"])
def test_bad_sids_rejected(bad: str) -> None:
    with pytest.raises(sd.DescriptorError):
        sd.encode_sid(bad)


def test_decode_rejects_garbage() -> None:
    with pytest.raises(sd.DescriptorError):
        sd.decode(b"\x01\x00\x04")
    with pytest.raises(sd.DescriptorError):
        sd.decode(sd.encode(sd.rbcd([f"{DOMAIN}-1"]))[:-3])
