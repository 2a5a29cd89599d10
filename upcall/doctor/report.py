"""One result line per check. Pure."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    status: Status
    name: str
    what: str
    fix: str = ""

    def line(self) -> str:
        """`ok|warn|FAIL <check>: <what>; fix: <what to do>` (no fix part when all is well)."""
        text = f"{self.status.value} {self.name}: {self.what}"
        return f"{text}; fix: {self.fix}" if self.fix else text

    def as_dict(self) -> dict[str, str]:
        return {"status": self.status.value, "check": self.name, "what": self.what,
                "fix": self.fix}  # fmt: skip


def ok(name: str, what: str) -> Check:
    return Check(Status.OK, name, what)


def warn(name: str, what: str, fix: str = "") -> Check:
    return Check(Status.WARN, name, what, fix)


def fail(name: str, what: str, fix: str) -> Check:
    return Check(Status.FAIL, name, what, fix)


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status is Status.FAIL for c in checks) else 0
