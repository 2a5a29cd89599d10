"""KRB5CCNAME from a hostile environment; krb5 error classification."""

from __future__ import annotations

from pathlib import Path

import pytest

from upcall.caller import ccache
from upcall.caller.procinfo import IdMap
from upcall.errors import Reason
from upcall.krb5.classify import CC_NOTFOUND, S_PRINCIPAL_UNKNOWN, TKT_EXPIRED, classify, signed


def test_first_non_empty_krb5ccname_wins() -> None:
    env = b"A=1\0KRB5CCNAME=\0KRB5CCNAME=FILE:/tmp/cc\0KRB5CCNAME=FILE:/other\0"
    assert ccache.krb5ccname_from_environ(env) == "FILE:/tmp/cc"
    assert ccache.krb5ccname_from_environ(b"PATH=/bin\0") is None


@pytest.mark.parametrize(
    "value", ["FILE:/tmp/krb5cc_1000", "/tmp/krb5cc_1000", "DIR:/run/user/1000/krb5cc",
              "DIR::/run/user/1000/krb5cc/tkt", "KEYRING:persistent:1000", "KCM:1000"],
)  # fmt: skip
def test_acceptable_cache_names(value: str) -> None:
    assert ccache.validate_ccname(value) is None


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("FILE:relative/cc", "not absolute"),
        ("krb5cc", "not absolute"),
        ("MEMORY:x", "cannot hold"),
        ("API:x", "cannot hold"),
        ("KEYRING:session:x", "session or process keyring"),
        ("FILE:/tmp/a\nb", "control"),
        ("FILE:/" + "a" * 5000, "too long"),
    ],
)
def test_hostile_cache_names_fall_back(value: str, needle: str) -> None:
    why = ccache.validate_ccname(value)
    assert why is not None and needle in why
    choice = ccache.choose(f"KRB5CCNAME={value}".encode() + b"\0", probe=True)
    assert choice.name is None and needle in choice.note


def test_not_probing_means_default() -> None:
    assert ccache.choose(b"KRB5CCNAME=FILE:/x\0", probe=False).name is None
    assert ccache.choose(b"KRB5CCNAME=FILE:/x\0", probe=True).name == "FILE:/x"


def test_classification_folds_unsigned_minor_codes() -> None:
    assert signed(2529639053) == CC_NOTFOUND
    assert classify(2529639053, who="alice").reason is Reason.NO_CREDENTIALS
    c = classify(S_PRINCIPAL_UNKNOWN & 0xFFFFFFFF, who="alice", spn="cifs/x")
    assert c.reason is Reason.UNKNOWN_SERVER and c.other_name_may_help and "cifs/x" in c.hint
    assert classify(TKT_EXPIRED, who="alice").reason is Reason.EXPIRED_CREDENTIALS
    assert classify(12345, who="alice").reason is Reason.GSS_FAILURE


def test_id_map_translation() -> None:
    m = IdMap.parse("         0      23001          1\n         1     100000      65536\n")
    assert m.to_inside(23001) == 0 and m.to_inside(100005) == 6 and m.to_inside(0) is None


def test_log_values_cannot_break_or_forge_lines() -> None:
    from upcall import log

    line = log.kv(error="gss said\0no\nreason=fake", host="h")
    assert "\0" not in line and "\n" not in line
    assert line.startswith('error="gss said\\x00no\\x0areason=fake"')
    log.setup(debug=False, echo=False)
    log.emit(3, "a NUL\0 must not raise")  # syslog(3) refuses NULs: emit escapes them


def test_absent_file_cache_fails_without_krb5(tmp_path: Path) -> None:
    """The local worker fails a FILE or DIR cache that is not there itself (no mech loaded),
    with the reason and hint krb5's own "no cache file" gets; the trail says so."""
    from upcall.errors import CredentialError
    from upcall.sources import local
    from upcall.sources.base import Attempt

    for name in (f"FILE:{tmp_path}/none", f"{tmp_path}/none", f"DIR:{tmp_path}/nodir"):
        trail: list[Attempt] = []
        with pytest.raises(CredentialError) as e:
            local._check_owner(name, f"{name} (environ)", "alice", trail)
        assert e.value.reason is Reason.NO_CREDENTIALS
        assert e.value.hint == "alice has no Kerberos ticket cache: run kinit"
        assert e.value.message == f"no usable tickets in {name} (environ): the cache does not exist"
        assert [(a.source, a.outcome, a.reason) for a in trail] == [
            ("ccache", "failed", "no-credentials")
        ]


def test_present_own_cache_and_other_kinds_go_to_krb5(tmp_path: Path) -> None:
    from upcall.sources import local
    from upcall.sources.base import Attempt

    own = tmp_path / "cc"
    own.write_bytes(b"")
    trail: list[Attempt] = []
    for name in (f"FILE:{own}", f"DIR:{tmp_path}", "KEYRING:persistent:1000", "KCM:1000"):
        local._check_owner(name, name, "alice", trail)
    assert trail == []
