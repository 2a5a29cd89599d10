"""Read and write gssproxy's ini dialect the way gssproxy 0.9.1 (libini) reads it.

Whole-line ``#``/``;`` comments only (a trailing ``# x`` is part of the value), ``key = value``
split at the first ``=``, repeated keys kept in order (``cred_store``), no line continuation.
Used by the renderer (format), by the round-trip tests and by ``check`` (parse).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SECTION_RE = re.compile(r"^\s*\[([^\]]*)\]\s*$")


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int


@dataclass(frozen=True)
class Section:
    name: str  # "gssproxy" or "service/NAME"
    entries: tuple[Entry, ...]
    line: int

    def values(self, key: str) -> list[str]:
        return [e.value for e in self.entries if e.key == key]

    def first(self, key: str) -> str | None:
        """gssproxy takes the first value of a single-valued option."""
        vals = self.values(key)
        return vals[0] if vals else None

    def entry(self, key: str) -> Entry | None:
        return next((e for e in self.entries if e.key == key), None)

    @property
    def service(self) -> str | None:
        return self.name[len("service/") :] if self.name.startswith("service/") else None


@dataclass(frozen=True)
class SyntaxIssue:
    line: int
    message: str


@dataclass(frozen=True)
class IniFile:
    sections: tuple[Section, ...]
    issues: tuple[SyntaxIssue, ...]


def parse(text: str) -> IniFile:
    sections: list[Section] = []
    issues: list[SyntaxIssue] = []
    name: str | None = None
    start = 0
    entries: list[Entry] = []

    def close() -> None:
        if name is not None:
            sections.append(Section(name, tuple(entries), start))

    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = _SECTION_RE.match(raw)
        if m:
            close()
            name, start, entries = m.group(1).strip(), no, []
            continue
        if "=" not in line:
            issues.append(SyntaxIssue(no, f"not 'key = value': {line!r}"))
            continue
        if name is None:
            issues.append(SyntaxIssue(no, "option outside any [section]"))
            continue
        key, _, value = line.partition("=")
        entries.append(Entry(key.strip(), value.strip(), no))
    close()
    return IniFile(tuple(sections), tuple(issues))


def format_section(name: str, options: list[tuple[str, str]], comment: str = "") -> str:
    """One section; ``comment`` lines go above it as whole-line comments."""
    out = [f"# {c}" if c else "#" for c in comment.splitlines()] if comment else []
    out.append(f"[{name}]")
    out.extend(f"  {k} = {v}" for k, v in options)
    return "\n".join(out) + "\n"
