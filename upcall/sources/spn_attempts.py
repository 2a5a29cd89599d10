"""Try the SPN candidates in order until one gives a token: the loop every source shares.

Only an unknown server principal is worth another name (cifs/ -> CIFS/ -> guessed domain ->
PTR); any other failure (no tickets, expired, KDC refusal, S4U refusal) ends the search at once,
so no DNS look-up is made for a failure a different name cannot fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..errors import CredentialError, Reason, UpcallError
from ..krb5.spn import SpnCandidate
from .base import Attempt, SourceKind, SourceToken

# How a source classifies a GSS failure for one SPN (once, with its own table): the raw
# gssapi error -> (trail detail, error to report).
Translate = Callable[[Any, SpnCandidate], tuple[str, UpcallError]]


def first_token(
    spns: Iterable[SpnCandidate],
    creds: object,
    who: str,
    trail: list[Attempt],
    kind: SourceKind,
    translate: Translate,
    *,
    impersonated: bool = False,
) -> SourceToken:
    """Worker: the first SPN candidate that gives a token; an unknown server principal moves
    on to the next name, any other failure (classified once by `translate`) ends the search."""
    from ..krb5 import gss

    last: UpcallError | None = None
    for spn in spns:
        try:
            tok = gss.initiate(spn, creds, who=who)
        except gss.InitFailure as e:
            detail, err = translate(e.error, spn)
            trail.append(Attempt(kind.value, "failed", detail, err.reason.value))
            last = err
            if err.reason is not Reason.UNKNOWN_SERVER:
                raise err from None
            continue
        return SourceToken(
            kind, tok.token, tok.session_key, tok.enctype, tok.principal, tok.spn, impersonated
        )
    raise last or CredentialError("no service principal candidates", reason=Reason.UNKNOWN_SERVER)
