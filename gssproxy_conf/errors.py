"""The one exceptions module. Every error carries a stable code (for scripts and tests)
and, where it comes from the input file, the file and line it points at."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Code(enum.Enum):
    """Stable error codes; the value is what the CLI prints."""

    YAML_SYNTAX = "E-YAML"
    UNKNOWN_KEY = "E-KEY"
    MISSING_KEY = "E-MISSING"
    BAD_TYPE = "E-TYPE"
    BAD_VALUE = "E-VALUE"
    CONFLICT = "E-CONFLICT"
    NOT_OWNED = "E-NOT-OWNED"
    EDITED = "E-EDITED"
    GSSPROXY_SET = "E-GSSPROXY-SET"  # the merged /etc/gssproxy would not start
    IO = "E-IO"
    # warnings: the input is valid and is rendered, but part of it cannot work as written
    BELOW_MIN_UID = "W-MIN-UID"
    DEPRECATED = "W-DEPRECATED"


@dataclass(frozen=True)
class Location:
    path: str
    line: int  # 1-based
    column: int = 0  # 1-based; 0 = unknown

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" + (f":{self.column}" if self.column else "")


@dataclass(frozen=True)
class Problem:
    code: Code
    message: str
    location: Location | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.code.value}: {self.message}"


class GssproxyConfError(Exception):
    """Base class; ``problems`` lists every problem found (validation reports them all)."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(GssproxyConfError):
    """The input YAML is malformed or invalid; nothing may be written."""


class OwnershipError(GssproxyConfError):
    """A target exists that we did not write (or that was edited since): not touched."""


class MergeConflict(OwnershipError):
    """Our files plus the ones already there make a set gssproxy refuses: not written."""


class WriteError(GssproxyConfError):
    """An I/O failure while writing."""


def single(code: Code, message: str, location: Location | None = None) -> list[Problem]:
    return [Problem(code, message, location)]
