"""Service principal candidates for a CIFS server, in the order cifs.upcall tries them.

1. `cifs@host` (host lower-cased), then `CIFS@host` (Azure Files / Entra KDCs issue `CIFS`).
2. A short name (no dot): the domain of its canonical DNS name is appended ("Andrew Bartlett's
   scheme"), then both spellings again.
3. Only with -t/--trust-dns: the PTR name of the server's address. PTR records can be spoofed,
   which is why this is off by default.
Candidates are produced lazily so DNS is asked only when an earlier candidate failed for a
reason a different name could fix. The resolver is injected so the logic is testable.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ..kernel.request import IPAddress


@dataclass(frozen=True)
class SpnCandidate:
    service: str
    host: str
    why: str

    @property
    def gss_name(self) -> str:
        """GSS host-based service form, imported as KRB5_NT_SRV_HST."""
        return f"{self.service}@{self.host}"

    @property
    def principal(self) -> str:
        return f"{self.service}/{self.host}"


class Resolver(Protocol):
    def canonical_name(self, host: str) -> str | None: ...
    def reverse_name(self, ip: IPAddress) -> str | None: ...


class SystemResolver:
    """getaddrinfo/getnameinfo: NSS and DNS of the namespace the caller lives in."""

    def canonical_name(self, host: str) -> str | None:
        try:
            infos = socket.getaddrinfo(host, None, flags=socket.AI_CANONNAME)
        except (OSError, UnicodeError):  # UnicodeError: IDNA refuses an empty or long label
            return None
        return infos[0][3] or None if infos else None

    def reverse_name(self, ip: IPAddress) -> str | None:
        try:
            name, _ = socket.getnameinfo((str(ip), 0), socket.NI_NAMEREQD)
        except OSError:
            return None
        return name


def _both(host: str, why: str) -> Iterator[SpnCandidate]:
    yield SpnCandidate("cifs", host, why)
    yield SpnCandidate("CIFS", host, why + ", upper-case service")


def _clean(name: str) -> str:
    return name.lower().rstrip(".")


def candidates(
    host: str, ip: IPAddress | None, *, trust_dns: bool, resolver: Resolver
) -> Iterator[SpnCandidate]:
    """Worker, after crossing into the caller (its DNS): the SPNs to try, in order, lazily."""
    host = _clean(host)
    seen = {host}
    yield from _both(host, "server name")
    if "." not in host:
        canon = resolver.canonical_name(host)
        if canon and "." in canon:
            full = f"{host}.{_clean(canon.split('.', 1)[1])}"
            if full not in seen:
                seen.add(full)
                yield from _both(full, f"short name + domain of {canon}")
    if trust_dns and ip is not None:
        ptr = resolver.reverse_name(ip)
        if ptr and _clean(ptr) not in seen:
            yield from _both(_clean(ptr), f"PTR of {ip} (-t)")
