"""The two krb5.conf facts the policy needs, read in the parent without loading GSSAPI.

The proxy child must set gssproxy's interposer environment before libgssapi's first call, and
the parent forks every child, so the parent reads krb5.conf itself: `default_realm` (to name a
user `<login>@<realm>`) and `[domain_realm]` (a server's realm, for `realm:` rules). This is
the host's krb5.conf (--host-krb5-config, else /etc/krb5.conf), as gssproxy's. `include` and
`includedir` are followed like MIT does; `-k` is not used here: it names the caller's file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

DEFAULT_FILES = "/etc/krb5.conf"
_SECTION = re.compile(r"\s*\[([^\]]+)\]\s*$")
_RELATION = re.compile(r"\s*([^=\s]+)\s*=\s*(.*?)\s*$")
_INCLUDEDIR_NAME = re.compile(r"[A-Za-z0-9_-]+(\.conf)?")


@dataclass(frozen=True)
class Krb5Facts:
    default_realm: str | None
    domain_realm: tuple[tuple[str, str], ...]  # (host or .domain, REALM), file order

    def host_realm(self, host: str) -> str | None:
        """MIT's order: the exact host, then each parent domain ".x.y"; else default_realm."""
        host = host.lower().rstrip(".")
        table = {k.lower(): v for k, v in reversed(self.domain_realm)}  # first entry wins
        if host in table:
            return table[host]
        labels = host.split(".")
        for i in range(len(labels)):
            key = "." + ".".join(labels[i:])
            if key in table:
                return table[key]
        return self.default_realm


@dataclass(frozen=True)
class Profile:
    """What a krb5.conf says, as far as cifs-upcall and its doctor read it (MIT's rules:
    include/includedir followed, the first value of a relation wins)."""

    relations: Mapping[tuple[str, str], str]  # (section, key) -> first top-level value
    domain_realm: tuple[tuple[str, str], ...]  # (host or .domain, REALM), file order
    realm_kdcs: Mapping[str, tuple[str, ...]]  # [realms] REALM = { kdc = ... }
    includedirs: tuple[str, ...] = ()

    def facts(self) -> Krb5Facts:
        return Krb5Facts(self.relations.get(("libdefaults", "default_realm")), self.domain_realm)


def _lines(path: str, includedirs: list[str], depth: int = 0) -> Iterator[str]:
    if depth > 8:
        return
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("include "):
            yield from _lines(stripped[len("include ") :].strip(), includedirs, depth + 1)
        elif stripped.startswith("includedir "):
            d = stripped[len("includedir ") :].strip()
            includedirs.append(d)
            try:
                names = sorted(os.listdir(d))
            except OSError:
                continue
            for n in names:
                if _INCLUDEDIR_NAME.fullmatch(n):
                    yield from _lines(os.path.join(d, n), includedirs, depth + 1)
        else:
            yield line


def parse_profile(lines: Iterable[str], includedirs: tuple[str, ...] = ()) -> Profile:
    section, nesting, realm = "", 0, ""
    rel: dict[tuple[str, str], str] = {}
    dr: list[tuple[str, str]] = []
    kdcs: dict[str, list[str]] = {}
    for line in lines:
        if not line.strip() or line.lstrip().startswith(("#", ";")):  # whole-line comments only
            continue
        m = _SECTION.match(line)
        if m:
            section, nesting = m[1].strip(), 0
            continue
        if line.strip() == "}":
            nesting = max(0, nesting - 1)
            continue
        r = _RELATION.match(line)
        if r is None:
            continue
        key, value = r[1], r[2]
        if value == "{":
            nesting += 1
            if nesting == 1:
                realm = key
            continue
        if nesting == 0:
            rel.setdefault((section, key), value)
            if section == "domain_realm":
                dr.append((key, value))
        elif section == "realms" and nesting == 1 and key == "kdc":
            kdcs.setdefault(realm, []).append(value)
    return Profile(rel, tuple(dr), {k: tuple(v) for k, v in kdcs.items()}, includedirs)


def parse_lines(lines: Iterable[str]) -> Krb5Facts:
    return parse_profile(lines).facts()


_parsed: dict[tuple[tuple[str, ...], tuple[str, ...]], Profile] = {}  # see read()
PARSED_MAX = 8


def read(files: str | None = None) -> Profile:
    """Parse the krb5.conf files (colon-separated like KRB5_CONFIG; default /etc/krb5.conf).
    The files are read every time; lines parsed before in this process (or in the daemon
    before it forked this handler) are not parsed again."""
    includedirs: list[str] = []
    lines: list[str] = []
    for path in (files or DEFAULT_FILES).split(":"):
        lines.extend(_lines(path, includedirs))
    key = (tuple(lines), tuple(includedirs))
    hit = _parsed.get(key)
    if hit is None:
        hit = parse_profile(lines, key[1])
        if len(_parsed) >= PARSED_MAX:
            _parsed.pop(next(iter(_parsed)))
        _parsed[key] = hit
    return hit


def load(files: str | None = None) -> Krb5Facts:
    """The host's krb5.conf: `files` (--host-krb5-config, colon-separated like KRB5_CONFIG),
    else /etc/krb5.conf. The helper's own environment is never consulted (it starts clean)."""
    return read(files).facts()
