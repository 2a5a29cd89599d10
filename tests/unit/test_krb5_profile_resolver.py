"""The host krb5.conf reader's include/includedir handling, and the system resolver on names
that need no network (localhost, the loopback address, an invalid name)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from upcall.krb5 import profile as krb5_profile
from upcall.krb5.spn import SystemResolver


def test_include_and_includedir(tmp_path: Path) -> None:
    d = tmp_path / "krb5.conf.d"
    d.mkdir()
    (d / "realms.conf").write_text("[domain_realm]\n .lab.test = LAB.TEST\n")
    (d / "ignored~").write_text("[domain_realm]\n .other.test = OTHER.TEST\n")
    (tmp_path / "libdefaults").write_text(
        "[libdefaults]\n default_realm = FIRST.TEST\n default_realm = SECOND.TEST\n"
    )
    main = tmp_path / "krb5.conf"
    main.write_text(
        f"include {tmp_path / 'libdefaults'}\n"
        f"includedir {d}\n"
        f"includedir {tmp_path / 'missing.d'}\n"
        f"include {tmp_path / 'missing.conf'}\n"
        "[realms]\n LAB.TEST = {\n  kdc = dc1\n }\n"
        "[domain_realm]\n fs9.lab.test = NINE.TEST\n"
    )
    facts = krb5_profile.load(str(main))
    assert facts.default_realm == "FIRST.TEST"  # the first one counts
    assert facts.host_realm("fs1.lab.test") == "LAB.TEST"
    assert facts.host_realm("FS9.lab.test.") == "NINE.TEST"
    assert facts.host_realm("x.other.test") == "FIRST.TEST"  # "ignored~" was not read
    # several files, colon-separated like KRB5_CONFIG
    other = tmp_path / "other.conf"
    other.write_text("[domain_realm]\n .other.test = OTHER.TEST\n")
    assert krb5_profile.load(f"{main}:{other}").host_realm("x.other.test") == "OTHER.TEST"


def test_include_loop_is_bounded(tmp_path: Path) -> None:
    loop = tmp_path / "loop.conf"
    loop.write_text(f"include {loop}\n[libdefaults]\n default_realm = LOOP.TEST\n")
    assert krb5_profile.load(str(loop)).default_realm == "LOOP.TEST"


def test_system_resolver_without_network() -> None:
    r = SystemResolver()
    assert r.canonical_name("localhost") is not None
    assert r.reverse_name(ipaddress.IPv4Address("127.0.0.1")) not in ("",)


def test_system_resolver_empty_label_is_no_name() -> None:
    # was a bug: getaddrinfo's UnicodeError (IDNA: an empty or >63-byte label) escaped
    assert SystemResolver().canonical_name("invalid..name") is None
