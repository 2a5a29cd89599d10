"""Local sources, run in a forked child: enter the caller's namespaces, become the user, then
try the user's own ccache and, for `user=` mounts, the keytab.

Order inside the child matters for security: namespaces are entered while still root (setns
needs it), then privileges are dropped, and only then is anything of the user's opened: the
ccache, krb5.conf of the container, NSS and DNS for SPN guessing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from .. import identity, namespaces
from ..ccache import CcacheChoice
from ..errors import CredentialError, Reason, UpcallError
from ..procinfo import IDENTITY, IdMap
from ..request import IPAddress
from ..spn import SpnCandidate, SystemResolver, candidates
from .base import Attempt, SourceKind, SourceToken
from .spn_attempts import first_token

KEYTAB_CCACHE = "MEMORY:cifs-upcall-keytab"


@dataclass(frozen=True)
class LocalPlan:
    """Everything the child needs, decided in the parent before the fork."""

    host: str
    ip: IPAddress | None
    trust_dns: bool
    ident: identity.Identity
    pid: int | None
    ns: namespaces.NamespacePlan
    uid_map: IdMap
    gid_map: IdMap
    ccache: CcacheChoice
    try_ccache: bool
    keytab_principal: str | None
    keytab: str | None
    krb5_config: str | None
    env_notes: tuple[str, ...] = field(default_factory=tuple)


class _Candidates:
    """SPN candidates, resolved lazily once and shared by the sources that follow."""

    def __init__(self, gen: Iterator[SpnCandidate]):
        self._gen = gen
        self._seen: list[SpnCandidate] = []

    def __iter__(self) -> Iterator[SpnCandidate]:
        yield from self._seen
        for c in self._gen:
            self._seen.append(c)
            yield c


def _as_is(e: Exception, spn: SpnCandidate) -> tuple[str, UpcallError]:
    """Local failures are already classified krb5 errors (gss.GssFailure)."""
    assert isinstance(e, UpcallError)
    return f"{spn.principal}: {e.message}", e


def _ccache_source(
    plan: LocalPlan, spns: _Candidates, who: str, trail: list[Attempt]
) -> SourceToken:
    import gssapi
    import gssapi.raw

    from .. import gss

    if plan.ccache.name:
        os.environ["KRB5CCNAME"] = plan.ccache.name
    else:
        os.environ.pop("KRB5CCNAME", None)
    ccname = gssapi.raw.krb5_ccache_name(None).decode(errors="replace")
    where = f"{ccname} ({plan.ccache.origin}{'; ' + plan.ccache.note if plan.ccache.note else ''})"
    try:
        creds = gssapi.Credentials(usage="initiate", mechs=[gss.KRB5])
    except gssapi.exceptions.GSSError as e:
        f = gss.failure(e, f"no usable tickets in {where}", who)
        trail.append(Attempt(SourceKind.CCACHE.value, "failed", f.message, f.reason.value))
        raise f from e
    try:
        creds.lifetime  # noqa: B018 - raises if the TGT has expired
    except gssapi.exceptions.ExpiredCredentialsError:
        # A still-valid service ticket in the cache may serve: try, and report expiry if not.
        trail.append(Attempt(SourceKind.CCACHE.value, "note", f"TGT in {where} has expired"))
    tok = first_token(spns, creds, who, trail, SourceKind.CCACHE, _as_is)
    trail.append(Attempt(SourceKind.CCACHE.value, "ok", f"{tok.principal} from {where}"))
    return tok


def _keytab_source(plan: LocalPlan, spns: _Candidates, trail: list[Attempt]) -> SourceToken:
    import gssapi

    from .. import gss

    assert plan.keytab_principal is not None
    keytab = plan.keytab or os.environ.get("KRB5_KTNAME") or "FILE:/etc/krb5.keytab"
    who = plan.keytab_principal
    # A private MEMORY cache: the AS exchange's TGT must never land in a file of the user's.
    os.environ["KRB5CCNAME"] = KEYTAB_CCACHE
    try:
        name = gssapi.Name(who, gssapi.NameType.kerberos_principal)
        creds = gssapi.Credentials(
            name=name,
            usage="initiate",
            mechs=[gss.KRB5],
            store={"client_keytab": keytab, "ccache": KEYTAB_CCACHE},
        )
    except gssapi.exceptions.GSSError as e:
        f = gss.failure(e, f"keytab {keytab} gives no credentials for {who}", who)
        trail.append(Attempt(SourceKind.KEYTAB.value, "failed", f.message, Reason.KEYTAB.value))
        raise f from e
    tok = first_token(spns, creds, who, trail, SourceKind.KEYTAB, _as_is)
    trail.append(Attempt(SourceKind.KEYTAB.value, "ok", f"{tok.principal} from keytab {keytab}"))
    return tok


def run(plan: LocalPlan) -> dict[str, object]:
    """The child's body: SourceToken JSON plus the trail, or UpcallError carrying the trail."""
    import gssapi
    import gssapi.raw  # noqa: F401

    from .. import gss  # noqa: F401

    trail: list[Attempt] = [Attempt("caller", "note", n) for n in plan.env_notes]
    try:
        identity.clear_groups()
        if plan.ns.enter and plan.pid is not None:
            namespaces.enter(namespaces.open_fds(plan.pid, plan.ns))
            trail.append(Attempt("namespaces", "ok", "entered " + ",".join(plan.ns.enter)))
        maps = (plan.uid_map, plan.gid_map) if plan.ns.changes_user else (IDENTITY, IDENTITY)
        identity.become(plan.ident, *maps)
        if plan.krb5_config:
            os.environ["KRB5_CONFIG"] = plan.krb5_config
        who = plan.ident.name or f"uid {plan.ident.uid}"
        spns = _Candidates(
            candidates(plan.host, plan.ip, trust_dns=plan.trust_dns, resolver=SystemResolver())
        )
        last_error: UpcallError | None = None
        if plan.try_ccache:
            try:
                return {
                    "token": _ccache_source(plan, spns, who, trail).to_json(),
                    "trail": [a.as_dict() for a in trail],
                }
            except UpcallError as e:
                last_error = e
        if plan.keytab_principal:
            try:
                return {
                    "token": _keytab_source(plan, spns, trail).to_json(),
                    "trail": [a.as_dict() for a in trail],
                }
            except UpcallError as e:
                last_error = e  # for a user= mount the keytab's failure says more
        raise last_error or CredentialError("no local credential source applies")
    except UpcallError as e:
        e.trail = [a.as_dict() for a in trail]
        raise
