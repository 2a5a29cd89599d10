"""One step of an upcall's decision trail (--dry-run, the log with -d, explain). Pure.

Typed in every process; JSON only at the edges: the worker->parent pipe (sources/base.py's
parse_trail checks it there) and the output (respond.py, doctor).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Attempt:
    source: str  # "policy", "caller", "ccache", "keytab", "proxy", "local", ...
    outcome: str  # "ok", "failed", "skipped", "note", "left"
    detail: str
    reason: str = ""  # a Reason value where the step failed

    def as_dict(self) -> dict[str, str]:
        return asdict(self)
