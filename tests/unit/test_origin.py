"""Only kernel-made cifs.spnego keys are served (CVE-2026-46243)."""

from __future__ import annotations

import pytest

from upcall.errors import BadDescription, ForeignKey
from upcall.kernel.origin import KERNEL_PERM, check_origin, parse_describe

KERNEL = (
    "cifs.spnego;0;0;39010000;ver=0x2;host=vm1;ip4=192.168.122.73;sec=krb5;uid=0x0;"
    "creduid=0x0;user=user1;pid=0xbaf7d;upcall_target=mount"
)


def test_kernel_key_is_accepted_and_description_kept_whole() -> None:
    info = parse_describe(KERNEL)
    check_origin(info)
    assert (info.type, info.uid, info.gid, info.perm) == ("cifs.spnego", 0, 0, KERNEL_PERM)
    assert info.description.startswith("ver=0x2;host=vm1;") and info.description.endswith("mount")


@pytest.mark.parametrize(
    ("prefix", "needle"),
    [
        ("cifs.spnego;1000;1000;3f010000;", "owned by 1000:1000"),  # user-made (unpatched kernel)
        ("cifs.spnego;0;1000;39010000;", "owned by 0:1000"),
        ("cifs.spnego;0;0;3f010000;", "permissions are 3f010000"),
        ("user;0;0;39010000;", "key type is 'user'"),
        ("dns_resolver;0;0;39010000;", "key type is 'dns_resolver'"),
    ],
)
def test_forged_or_foreign_keys_are_refused(prefix: str, needle: str) -> None:
    info = parse_describe(prefix + "ver=0x2;host=h;sec=krb5;uid=0x0;creduid=0x0;pid=0x1")
    with pytest.raises(ForeignKey) as e:
        check_origin(info)
    assert needle in str(e.value) and e.value.reason.value == "foreign-key"


@pytest.mark.parametrize("raw", ["cifs.spnego;0;0", "cifs.spnego;x;0;39010000;d", "t;0;0;zz;d"])
def test_malformed_describe_output(raw: str) -> None:
    with pytest.raises(BadDescription):
        parse_describe(raw)
