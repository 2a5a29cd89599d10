"""SPN candidates: order, laziness (DNS only when needed), -t only with trust."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from itertools import islice

from upcall.kernel.request import IPAddress
from upcall.krb5.spn import candidates


@dataclass
class TableResolver:
    """The resolver injection point, fed from a table; records what was asked."""

    canon: dict[str, str] = field(default_factory=dict)
    ptr: dict[str, str] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def canonical_name(self, host: str) -> str | None:
        self.asked.append(f"canon:{host}")
        return self.canon.get(host)

    def reverse_name(self, ip: IPAddress) -> str | None:
        self.asked.append(f"ptr:{ip}")
        return self.ptr.get(str(ip))


IP = ipaddress.IPv4Address("10.0.0.5")


def names(host: str, r: TableResolver, trust: bool = False) -> list[str]:
    return [c.gss_name for c in candidates(host, IP, trust_dns=trust, resolver=r)]


def test_fqdn_is_lowercased_and_tried_as_cifs_then_CIFS_without_dns() -> None:
    r = TableResolver()
    assert names("FS1.Example.COM.", r) == ["cifs@fs1.example.com", "CIFS@fs1.example.com"]
    assert r.asked == []


def test_short_name_gets_the_domain_of_its_canonical_name() -> None:
    r = TableResolver(canon={"fs1": "FS1.Corp.Example.com"})
    assert names("fs1", r) == [
        "cifs@fs1", "CIFS@fs1", "cifs@fs1.corp.example.com", "CIFS@fs1.corp.example.com",
    ]  # fmt: skip


def test_candidates_are_lazy_dns_is_asked_only_after_the_first_ones_failed() -> None:
    r = TableResolver(canon={"fs1": "fs1.example.com"})
    first_two = list(islice(candidates("fs1", IP, trust_dns=True, resolver=r), 2))
    assert [c.principal for c in first_two] == ["cifs/fs1", "CIFS/fs1"]
    assert r.asked == []


def test_ptr_name_only_with_trust_dns() -> None:
    r = TableResolver(ptr={"10.0.0.5": "filer.example.com"})
    assert names("10.0.0.5", r) == ["cifs@10.0.0.5", "CIFS@10.0.0.5"]
    assert names("10.0.0.5", r, trust=True)[2:] == [
        "cifs@filer.example.com",
        "CIFS@filer.example.com",
    ]


def test_no_duplicates_when_dns_returns_the_same_name() -> None:
    r = TableResolver(canon={"fs1": "fs1"}, ptr={"10.0.0.5": "FS1."})
    assert names("fs1", r, trust=True) == ["cifs@fs1", "CIFS@fs1"]
