"""The gssproxy configuration as it will be after ``apply``: what the directory holds now,
with the plan's files written and its removals done. gssproxy reads the directory as one
set, so a file of ours can stop the daemon because of a file that is not ours (two services
on one socket: 0.9.1 exits 1 at start, a reload keeps the old set). ``apply`` refuses such a
set before writing anything and names the files involved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..lint.check import Finding, Severity, lint
from ..render.gssproxy import GSSPROXY_DIR

MAIN_NAME = "gssproxy.conf"


@dataclass(frozen=True)
class StagedFile:
    path: str  # as on disk (under the root), for messages
    text: str
    ours: bool  # written (or kept) by this apply


@dataclass(frozen=True)
class Staged:
    directory: Path
    main: StagedFile | None
    snippets: tuple[StagedFile, ...]

    def findings(self) -> list[Finding]:
        main = (self.main.path, self.main.text) if self.main else None
        return lint(main, [(f.path, f.text) for f in self.snippets])

    def errors(self) -> list[Finding]:
        return [f for f in self.findings() if f.severity is Severity.ERROR]


def stage(root: Path, writes: Iterable[tuple[str, str]], removals: Iterable[str]) -> Staged:
    """``writes``: (file name in /etc/gssproxy, new text); ``removals``: file names."""
    directory = root / GSSPROXY_DIR.relative_to("/")
    files: dict[str, StagedFile] = {}
    if directory.is_dir():
        for p in sorted(directory.glob("*.conf")):
            files[p.name] = StagedFile(
                str(p), p.read_text(encoding="utf-8", errors="replace"), False
            )
    for name, text in writes:
        files[name] = StagedFile(str(directory / name), text, True)
    for name in removals:
        files.pop(name, None)
    main = files.pop(MAIN_NAME, None)
    return Staged(directory, main, tuple(files.values()))
