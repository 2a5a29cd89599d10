"""Self-relative security descriptors for msDS-AllowedToActOnBehalfOfOtherIdentity (RBCD).

Pure, no Samba or Windows libraries. The layout matches what Samba's ``descriptor.from_sddl``
+ ``ndr_pack`` produce for ``O:BAD:(A;;<rights>;;;<SID>)...`` (MS-DTYP 2.4.6): header, owner
SID, then the DACL (ACL revision 4, as AD writes it), no group, no SACL.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

SE_DACL_PRESENT = 0x0004
SE_SELF_RELATIVE = 0x8000
ACL_REVISION_DS = 4
ACCESS_ALLOWED_ACE_TYPE = 0

# SDDL right letters -> access mask bits (MS-DTYP 2.5.1.1), in the order Windows prints them
RIGHTS: dict[str, int] = {
    "CC": 0x00000001,
    "DC": 0x00000002,
    "LC": 0x00000004,
    "SW": 0x00000008,
    "RP": 0x00000010,
    "WP": 0x00000020,
    "DT": 0x00000040,
    "LO": 0x00000080,
    "CR": 0x00000100,
    "SD": 0x00010000,
    "RC": 0x00020000,
    "WD": 0x00040000,
    "WO": 0x00080000,
}
# What AD (Set-ADComputer -PrincipalsAllowedToDelegateToAccount) writes: all of the above
RBCD_MASK = 0x000F01FF
WELL_KNOWN = {"BA": "S-1-5-32-544", "SY": "S-1-5-18"}
_SID_RE = re.compile(r"^S-1-(\d+)((?:-\d+)*)$")


class DescriptorError(ValueError):
    """Bytes or SDDL that are not a descriptor of the shape we write."""


@dataclass(frozen=True)
class Ace:
    sid: str
    mask: int = RBCD_MASK
    type: int = ACCESS_ALLOWED_ACE_TYPE
    flags: int = 0


@dataclass(frozen=True)
class Descriptor:
    owner: str  # SID string
    dacl: tuple[Ace, ...]


def encode_sid(sid: str) -> bytes:
    m = _SID_RE.match(sid)
    if not m:
        raise DescriptorError(f"not a SID: {sid!r}")
    authority = int(m.group(1))
    subs = [int(x) for x in m.group(2).split("-")[1:]]
    if authority >= 2**48 or len(subs) > 15 or any(s >= 2**32 for s in subs):
        raise DescriptorError(f"SID out of range: {sid!r}")
    return (
        struct.pack("<BB", 1, len(subs))
        + authority.to_bytes(6, "big")
        + struct.pack(f"<{len(subs)}I", *subs)
    )


def decode_sid(data: bytes, offset: int = 0) -> tuple[str, int]:
    """-> (SID string, bytes used)."""
    if len(data) < offset + 8:
        raise DescriptorError("truncated SID")
    rev, count = data[offset], data[offset + 1]
    if rev != 1:
        raise DescriptorError(f"SID revision {rev}")
    end = offset + 8 + 4 * count
    if len(data) < end:
        raise DescriptorError("truncated SID")
    authority = int.from_bytes(data[offset + 2 : offset + 8], "big")
    subs = struct.unpack_from(f"<{count}I", data, offset + 8)
    return "-".join(["S-1", str(authority), *map(str, subs)]), end - offset


def _encode_ace(ace: Ace) -> bytes:
    sid = encode_sid(ace.sid)
    return struct.pack("<BBHI", ace.type, ace.flags, 8 + len(sid), ace.mask) + sid


def encode(sd: Descriptor) -> bytes:
    owner = encode_sid(sd.owner)
    aces = b"".join(_encode_ace(a) for a in sd.dacl)
    acl = struct.pack("<BBHHH", ACL_REVISION_DS, 0, 8 + len(aces), len(sd.dacl), 0) + aces
    header_len = 20
    return (
        struct.pack(
            "<BBHIIII",
            1,
            0,
            SE_DACL_PRESENT | SE_SELF_RELATIVE,
            header_len,  # owner
            0,  # group: none
            0,  # SACL: none
            header_len + len(owner),  # DACL
        )
        + owner
        + acl
    )


def decode(data: bytes) -> Descriptor:
    if len(data) < 20:
        raise DescriptorError("shorter than a descriptor header")
    rev, _, control, o_owner, _o_group, _o_sacl, o_dacl = struct.unpack_from("<BBHIIII", data)
    if rev != 1 or not control & SE_SELF_RELATIVE:
        raise DescriptorError("not a self-relative descriptor")
    owner = decode_sid(data, o_owner)[0] if o_owner else ""
    aces: list[Ace] = []
    if control & SE_DACL_PRESENT and o_dacl:
        if len(data) < o_dacl + 8:
            raise DescriptorError("truncated ACL")
        _acl_rev, _, _size, count, _ = struct.unpack_from("<BBHHH", data, o_dacl)
        pos = o_dacl + 8
        for _ in range(count):
            if len(data) < pos + 8:
                raise DescriptorError("truncated ACE")
            a_type, a_flags, a_size, mask = struct.unpack_from("<BBHI", data, pos)
            aces.append(Ace(decode_sid(data, pos + 8)[0], mask, a_type, a_flags))
            pos += a_size
    return Descriptor(owner, tuple(aces))


def rights_string(mask: int) -> str:
    letters = "".join(k for k, bit in RIGHTS.items() if mask & bit)
    rest = mask & ~sum(RIGHTS.values())
    return letters + (f"0x{rest:x}" if rest else "") if letters else f"0x{mask:x}"


def _sddl_sid(sid: str) -> str:
    return next((k for k, val in WELL_KNOWN.items() if val == sid), sid)


def to_sddl(sd: Descriptor) -> str:
    aces = "".join(
        f"(A;;{rights_string(a.mask)};;;{_sddl_sid(a.sid)})"
        for a in sd.dacl
        if a.type == ACCESS_ALLOWED_ACE_TYPE and a.flags == 0
    )
    if len(aces) and aces.count("(") != len(sd.dacl):
        raise DescriptorError("only plain allow ACEs can be written as SDDL here")
    return f"O:{_sddl_sid(sd.owner)}D:{aces}"


def rbcd(sids: list[str] | tuple[str, ...]) -> Descriptor:
    """The descriptor AD tools write: owner BUILTIN\\Administrators, one allow ACE per SID."""
    return Descriptor(WELL_KNOWN["BA"], tuple(Ace(s) for s in dict.fromkeys(sids)))


_ACE_RE = re.compile(r"\(([^()]*)\)")


def _rights_mask(text: str) -> int:
    if text.lower().startswith("0x"):
        return int(text, 16)
    if len(text) % 2:
        raise DescriptorError(f"rights {text!r}")
    mask = 0
    for i in range(0, len(text), 2):
        bit = RIGHTS.get(text[i : i + 2])
        if bit is None:
            raise DescriptorError(f"right {text[i : i + 2]!r} is not one an RBCD grant uses")
        mask |= bit
    return mask


def _sid_of(text: str) -> str:
    if text in WELL_KNOWN:
        return WELL_KNOWN[text]
    if not _SID_RE.match(text):
        raise DescriptorError(f"SID {text!r} is not one this reader knows")
    return text


def from_sddl(text: str) -> Descriptor:
    """The SDDL that Samba prints for RBCD descriptors: ``O:<sid>D:(A;;<rights>;;;<sid>)...``.
    Anything else (a group, DACL flags, other ACE types) is refused rather than dropped."""
    m = re.fullmatch(r"O:([^:()]+?)D:((?:\([^()]*\))*)", text.strip())
    if not m:
        raise DescriptorError(f"SDDL {text!r} is not an owner plus a plain DACL")
    aces = []
    for fields in _ACE_RE.findall(m.group(2)):
        parts = fields.split(";")
        if len(parts) != 6 or parts[0] != "A" or any(parts[i] for i in (1, 3, 4)):
            raise DescriptorError(f"ACE ({fields}) is not a plain allow ACE")
        aces.append(Ace(_sid_of(parts[5]), _rights_mask(parts[2])))
    return Descriptor(_sid_of(m.group(1)), tuple(aces))


def with_trustee(current: Descriptor | None, sid: str) -> Descriptor | None:
    """``current`` plus an allow ACE for ``sid``; None when it already allows ``sid``."""
    if current is None:
        return rbcd([sid])
    if any(a.sid == sid and a.type == ACCESS_ALLOWED_ACE_TYPE for a in current.dacl):
        return None
    return Descriptor(current.owner, (*current.dacl, Ace(sid)))
