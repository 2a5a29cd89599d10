"""The description parser: kernel formats accepted, anything else refused with a reason."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from upcall.errors import BadDescription, UnsupportedVersion
from upcall.request import SecType, UpcallTarget, parse_description

KERNEL_6_12 = (
    "ver=0x2;host=dc.lab.test;ip4=192.0.2.10;sec=krb5;uid=0x7d1;creduid=0x7d1;"
    "pid=0x247;upcall_target=app"
)


def test_kernel_6_12_multiuser_session() -> None:
    r = parse_description(KERNEL_6_12)
    assert (r.version, r.host, r.sec) == (2, "dc.lab.test", SecType.KRB5)
    assert r.ip == ipaddress.IPv4Address("192.0.2.10")
    assert (r.uid, r.creduid, r.pid, r.user) == (2001, 2001, 0x247, None)
    assert r.upcall_target is UpcallTarget.APP


def test_mount_session_with_user_and_old_kernel_without_target() -> None:
    r = parse_description(
        "ver=0x2;host=vm1;ip4=192.168.122.73;sec=mskrb5;uid=0x0;creduid=0x0;user=CLIENT$;pid=0x1f4"
    )
    assert r.user == "CLIENT$" and r.sec is SecType.MSKRB5
    assert r.upcall_target is UpcallTarget.UNSPECIFIED
    assert r.upcall_target.enters_caller_namespaces


def test_ipv6_full_and_colonless_forms() -> None:
    full = parse_description("ver=0x2;host=h;ip6=fe80:0:0:0:0:0:0:1;sec=krb5;uid=0x1;pid=0x2")
    old = parse_description(
        "ver=0x2;host=h;ip6=fe800000000000000000000000000001;sec=krb5;uid=0x1;pid=0x2"
    )
    assert full.ip == old.ip == ipaddress.IPv6Address("fe80::1")


def test_unknown_fields_are_ignored() -> None:
    r = parse_description(KERNEL_6_12 + ";future_field=xyz")
    assert r.host == "dc.lab.test"


def test_credential_uid_prefers_creduid_unless_legacy() -> None:
    r = parse_description("ver=0x2;host=h;sec=krb5;uid=0x3e8;creduid=0x3e9;pid=0x5")
    assert r.credential_uid() == 1001
    assert r.credential_uid(legacy_uid=True) == 1000


@pytest.mark.parametrize(
    ("desc", "needle"),
    [
        ("ver=0x2;host=h;sec=krb5;uid=0xZZ;pid=0x1", "not a hexadecimal"),
        ("ver=0x2;host=h;sec=krb5;uid=;pid=0x1", "not a hexadecimal"),
        ("ver=0x2;host=h;sec=krb5;uid=-1;pid=0x1", "not a hexadecimal"),
        ("ver=0x2;host=h;sec=krb5;uid=0x100000000;pid=0x1", "not a hexadecimal"),
        ("ver=0x2;host=h;sec=krb5;uid=0x1;uid=0x0;pid=0x1", "appears twice"),
        ("host=h;sec=krb5;uid=0x1", "ver= is missing"),
        ("ver=0x2;sec=krb5;uid=0x1", "host= is missing"),
        ("ver=0x2;host=h;uid=0x1", "sec= is missing"),
        ("ver=0x2;host=h;sec=krb5;pid=0x1", "neither creduid= nor uid="),
        ("ver=0x2;host=a@b;sec=krb5;uid=0x1", "characters a host name"),
        ("ver=0x2;host=a/b;sec=krb5;uid=0x1", "characters a host name"),
        ("ver=0x2;host=a b;sec=krb5;uid=0x1", "characters a host name"),
        ("ver=0x2;host=-dc.lab.test;sec=krb5;uid=0x1", "neither a host name nor an IP"),
        ("ver=0x2;host=a..b;sec=krb5;uid=0x1", "neither a host name nor an IP"),
        ("ver=0x2;host=dc%s%n;sec=krb5;uid=0x1", "neither a host name nor an IP"),
        ("ver=0x2;host=" + "a" * 1025 + ";sec=krb5;uid=0x1", "longer than"),
        ("ver=0x2;host=h;sec=krb5;uid=0x1;user=" + "u" * 257, "user= must be"),
        ("ver=0x2;host=h;sec=krb5;uid=0x1;user=a\x01b", "user= must be"),
        ("ver=0x2;host=h;sec=ntlm;uid=0x1", "sec='ntlm' is not one of"),
        ("ver=0x2;host=h;sec=krb5;uid=0x1;upcall_target=host", "upcall_target='host'"),
        ("ver=0x2;host=h;sec=krb5;uid=0x1;upcall_target=unspecified", "not a kernel value"),
        ("ver=0x2;host=h;ip4=1.2.3.4;ip6=::1;sec=krb5;uid=0x1", "both ip4= and ip6="),
        ("ver=0x2;host=h;ip4=1.2.3.400;sec=krb5;uid=0x1", "not a valid address"),
        ("ver=0x2;host=h;sec=krb5;uid=0x1;pid=0x0", "pid=0"),
        ("ver=0x0;host=h;sec=krb5;uid=0x1", "ver=0"),
        ("ver=0x2;host=h;sec=krb5;uid=0x1;garbage", "has no '='"),
        ("ver=0x2;host=h;sec=krb5;uid=0x1;" + "x=" * 3000, "over 4096"),
    ],
)
def test_malformed_descriptions_are_refused(desc: str, needle: str) -> None:
    with pytest.raises(BadDescription) as e:
        parse_description(desc)
    assert needle in str(e.value)


def test_newer_upcall_version_is_refused_with_its_own_reason() -> None:
    with pytest.raises(UnsupportedVersion) as e:
        parse_description("ver=0x3;host=h;sec=krb5;uid=0x1")
    assert e.value.reason.value == "unsupported-version"


# host names as a DNS name can be: no empty label, none starting with '-' (refused since the
# hostile suite showed `..` and `-x` reaching the caller stage)
hosts = st.from_regex(r"([a-z0-9][a-z0-9-]{0,20}\.){0,3}[a-z]{1,10}", fullmatch=True)
ids = st.integers(min_value=0, max_value=0xFFFFFFFF)


@given(
    host=hosts,
    ip=st.ip_addresses(),
    sec=st.sampled_from(list(SecType)),
    uid=ids,
    creduid=ids,
    pid=st.integers(min_value=1, max_value=0x3FFFFFFF),
    user=st.none() | st.from_regex(r"[A-Za-z0-9$@._-]{1,64}", fullmatch=True),
    target=st.sampled_from(list(UpcallTarget)),
)
def test_every_kernel_formatted_description_round_trips(
    host: str,
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    sec: SecType,
    uid: int,
    creduid: int,
    pid: int,
    user: str | None,
    target: UpcallTarget,
) -> None:
    # Formatted exactly as cifs_get_spnego_key's sprintf calls do.
    fam = "ip4" if ip.version == 4 else "ip6"
    ipstr = str(ip) if ip.version == 4 else ip.exploded  # %pI6: 8 zero-padded groups
    desc = f"ver=0x2;host={host};{fam}={ipstr};sec={sec.value};uid=0x{uid:x};creduid=0x{creduid:x}"
    if user is not None:
        desc += f";user={user}"
    desc += f";pid=0x{pid:x}"
    if target is not UpcallTarget.UNSPECIFIED:
        desc += f";upcall_target={target.value}"
    r = parse_description(desc)
    assert (r.host, r.ip, r.sec, r.uid, r.creduid, r.user, r.pid, r.upcall_target) == (
        host, ip, sec, uid, creduid, user, pid, target,
    )  # fmt: skip


@given(st.text(max_size=300))
def test_arbitrary_text_is_parsed_or_refused_never_crashes(text: str) -> None:
    try:
        r = parse_description(text)
    except BadDescription:
        return
    assert r.host and r.version in (1, 2)


@given(
    field=st.sampled_from(["uid", "creduid", "pid", "ver"]), junk=st.text(min_size=1, max_size=12)
)
def test_a_number_that_is_not_hex_is_never_read_as_zero(field: str, junk: str) -> None:
    fields = {
        "ver": "0x2",
        "host": "h",
        "sec": "krb5",
        "uid": "0x1",
        "creduid": "0x1",
        "pid": "0x9",
    }
    fields[field] = junk
    desc = ";".join(f"{k}={v}" for k, v in fields.items())
    try:
        r = parse_description(desc)
    except BadDescription:
        return
    # Accepted only if junk really was a hex number (with or without 0x).
    value = {"uid": r.uid, "creduid": r.creduid, "pid": r.pid, "ver": r.version}[field]
    assert value == int(junk.removeprefix("0x"), 16)
