"""What every source returns, and the trail of attempts shown by --dry-run and the log.

Both cross the worker->parent pipe as JSON; the parsers here are the parent's strict checks of
what a possibly hostile worker wrote (sizes, types, and only the claims the step may make).
"""

from __future__ import annotations

import enum
import re
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import CredentialError, WorkerProtocolError
from ..trail import Attempt as Attempt  # re-exported: the sources' vocabulary


class SourceKind(enum.Enum):
    CCACHE = "ccache"
    KEYTAB = "keytab"
    PROXY = "proxy"  # gssproxy impersonated the user (S4U2Self + S4U2Proxy)
    PROXY_KEYTAB = "proxy-keytab"  # gssproxy used the user's own keytab (not impersonation)

    @property
    def impersonates(self) -> bool:
        return self is SourceKind.PROXY


TRAIL_MAX = 64  # entries from one worker
_FIELD_MAX = 1024
TOKEN_MAX = 48 * 1024  # a krb5 AP-REQ with a large PAC stays well below (cifs.ko: 64 KiB msg)
_KEY_SIZES = (16, 24, 32)  # aes128/rc4, des3, aes256
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,512}")
_OUTCOMES = {"ok", "failed", "skipped", "note", "left"}


def parse_trail(obj: object, what: str) -> list[Attempt]:
    """Parent: a worker's trail, or WorkerProtocolError."""
    if not isinstance(obj, list) or len(obj) > TRAIL_MAX:
        raise WorkerProtocolError(f"{what} wrote a malformed trail")
    out = []
    for d in obj:
        if not isinstance(d, dict) or set(d) != {"source", "outcome", "detail", "reason"}:
            raise WorkerProtocolError(f"{what} wrote a malformed trail entry")
        if not all(isinstance(v, str) and len(v) <= _FIELD_MAX for v in d.values()):
            raise WorkerProtocolError(f"{what} wrote an oversized trail entry")
        if d["outcome"] not in _OUTCOMES:
            raise WorkerProtocolError(f"{what} wrote a trail entry with outcome {d['outcome']!r}")
        out.append(Attempt(d["source"], d["outcome"], d["detail"], d["reason"]))
    return out


@dataclass(frozen=True)
class SourceToken:
    """A krb5 token from some source, as it crosses the worker->parent pipe."""

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
    def from_json(
        cls, d: object, allowed: frozenset[SourceKind], what: str = "worker"
    ) -> SourceToken:
        """Parent: the token a worker claims, accepted only if every field is well-formed and
        its source is one the step that ran may produce (a local worker cannot claim to be
        gssproxy); `impersonated` follows from the source, never from the worker."""
        bad = WorkerProtocolError(f"{what} returned a malformed token")
        fields = {"source", "token", "session_key", "enctype", "principal", "spn", "impersonated"}
        if not isinstance(d, dict) or set(d) != fields:
            raise bad
        try:
            kind = SourceKind(d["source"])
        except ValueError:
            raise bad from None
        if kind not in allowed or d["impersonated"] is not kind.impersonates:
            raise WorkerProtocolError(f"{what} claimed source {kind.value}, which it cannot be")
        if not all(isinstance(d[k], str) for k in ("token", "session_key", "principal", "spn")):
            raise bad
        try:
            token, key = bytes.fromhex(d["token"]), bytes.fromhex(d["session_key"])
        except ValueError:
            raise bad from None
        enctype = d["enctype"]
        ok = (
            0 < len(token) <= TOKEN_MAX
            and len(key) in _KEY_SIZES
            and isinstance(enctype, int)
            and not isinstance(enctype, bool)
            and 0 < enctype < 1024
            and _NAME.fullmatch(d["principal"]) is not None
            and _NAME.fullmatch(d["spn"]) is not None
        )
        if not ok:
            raise bad
        return cls(kind, token, key, enctype, d["principal"], d["spn"], kind.impersonates)


REHEARSAL_HOST = "rehearsal.invalid"  # a rehearsal's server: nobody's (RFC 2606)


def rehearsal_result(kind: SourceKind, fail: bool = False) -> dict[str, object]:
    """A source's result of nobody's (zero bytes, .invalid names) for the rehearsals of
    workers and handlers (child.rehearse, child.rehearsed): a token of `kind` that passes
    from_json with its trail, or (`fail`) the CredentialError a source raises. Never sent."""
    if fail:
        e = CredentialError("rehearsal", hint="")
        e.trail = [Attempt(kind.value, "failed", "rehearsal", e.reason.value)]
        raise e
    token = SourceToken(kind, bytes(1024), bytes(32), 18, "rehearsal@INVALID",
                        f"cifs/{REHEARSAL_HOST}@INVALID", kind.impersonates)  # fmt: skip
    return {"token": token.to_json(), "trail": [Attempt(kind.value, "ok", "rehearsal").as_dict()]}
