"""What every source returns, and the trail of attempts shown by --dry-run and the log."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any


class SourceKind(enum.Enum):
    CCACHE = "ccache"
    KEYTAB = "keytab"
    PROXY = "proxy"  # gssproxy impersonated the user (S4U2Self + S4U2Proxy)
    PROXY_KEYTAB = "proxy-keytab"  # gssproxy used the user's own keytab (not impersonation)


@dataclass(frozen=True)
class Attempt:
    source: str
    outcome: str  # "ok", "failed", "skipped"
    detail: str
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class SourceToken:
    """A krb5 token from some source, as it crosses the child->parent pipe."""

    source: SourceKind
    token: bytes
    session_key: bytes
    enctype: int
    principal: str
    spn: str
    impersonated: bool

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            source=self.source.value, token=self.token.hex(), session_key=self.session_key.hex()
        )
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SourceToken:
        return cls(
            source=SourceKind(d["source"]),
            token=bytes.fromhex(d["token"]),
            session_key=bytes.fromhex(d["session_key"]),
            enctype=int(d["enctype"]),
            principal=str(d["principal"]),
            spn=str(d["spn"]),
            impersonated=bool(d["impersonated"]),
        )
