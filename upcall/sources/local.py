"""Local sources, run in a forked worker: cross the boundary into the caller (boundary.py:
preload, one setns on the pidfd, the user's ids with no capability), then try the user's own
ccache and, for `user=` mounts, the keytab.

Only after the crossing is anything of the user's touched: the working directory, the
container's krb5.conf, the ccache, NSS and DNS for SPN guessing. The environment is the
worker's own: nothing inherited, and GSS_USE_PROXY=no so the local source never reaches
gssproxy (the interposer would otherwise act with root's gssproxy services).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..caller import identity, namespaces
from ..caller.ccache import CcacheChoice
from ..errors import CredentialError, NamespaceError, Reason, UpcallError
from ..kernel.request import IPAddress
from ..krb5.classify import FCC_NOFILE, classify
from ..krb5.spn import SpnCandidate, SystemResolver, candidates
from ..worker import boundary, child
from .base import REHEARSAL_HOST, Attempt, SourceKind, SourceToken, rehearsal_result
from .spn_attempts import Translate, first_token

KEYTAB_CCACHE = "MEMORY:cifs-upcall-keytab"


@dataclass(frozen=True)
class LocalPlan:
    """Everything the child needs, decided in the parent before the fork."""

    host: str
    ip: IPAddress | None
    trust_dns: bool
    ident: identity.Identity
    target: identity.Target  # ids inside the namespace the worker ends up in
    pidfd: int  # the caller, pinned by the parent; -1: no caller (enter nothing)
    ns: namespaces.NamespacePlan
    ccache: CcacheChoice
    keytab_principal: str | None
    keytab: str | None
    krb5_config: str | None


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


def _krb5_failure(who: str) -> Translate:
    """The user's own credentials: classified once, with the krb5 table."""
    from ..krb5 import gss

    def translate(e: Any, spn: SpnCandidate) -> tuple[str, UpcallError]:
        f = gss.failure(e, f"no ticket for {spn.principal}", who, spn.principal)
        return f"{spn.principal}: {f.message}", f

    return translate


def _ccache_source(
    plan: LocalPlan, spns: _Candidates, who: str, trail: list[Attempt]
) -> SourceToken:
    import gssapi
    import gssapi.raw

    from ..krb5 import gss

    if plan.ccache.name:
        # krb5 takes KRB5CCNAME as it is: the name needs no krb5 context (nor the caller's
        # krb5.conf) to be known
        os.environ["KRB5CCNAME"] = ccname = plan.ccache.name
    else:
        os.environ.pop("KRB5CCNAME", None)
        try:
            ccname = gssapi.raw.krb5_ccache_name(None).decode(errors="replace")
        except gssapi.exceptions.GSSError as e:  # the caller's krb5.conf unreadable, a loop
            f = gss.failure(e, "the caller's krb5 configuration cannot be used", who)
            trail.append(Attempt(SourceKind.CCACHE.value, "failed", f.message, f.reason.value))
            raise f from None
    where = f"{ccname} ({plan.ccache.origin}{'; ' + plan.ccache.note if plan.ccache.note else ''})"
    _check_owner(ccname, where, who, trail)
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
    tok = first_token(spns, creds, who, trail, SourceKind.CCACHE, _krb5_failure(who))
    trail.append(Attempt(SourceKind.CCACHE.value, "ok", f"{tok.principal} from {where}"))
    return tok


def _check_owner(ccname: str, where: str, who: str, trail: list[Attempt]) -> None:
    """Worker, as the user: a FILE or DIR cache must be the user's own. Another uid's cache
    that she can read (0644, or through a group) is not hers to present as her identity.
    One that does not exist fails here, as krb5 would fail it, without loading the mech
    (~1 ms: the common case of a user with no tickets of her own, before gssproxy)."""
    kind, sep, residual = ccname.partition(":")
    if not sep or "/" in kind:
        kind, residual = "FILE", ccname
    if kind not in ("FILE", "DIR"):
        return
    path = residual.lstrip(":") if kind == "DIR" else residual
    try:
        st = os.stat(path)
    except FileNotFoundError:
        c = classify(FCC_NOFILE, who=who, spn="the server")
        detail = f"no usable tickets in {where}: the cache does not exist"
        trail.append(Attempt(SourceKind.CCACHE.value, "failed", detail, c.reason.value))
        raise CredentialError(detail, hint=c.hint, reason=c.reason) from None
    except OSError:
        return  # unreadable here (EACCES, ELOOP, ...): krb5 says why in its own words
    if st.st_uid == os.getuid() and (kind == "DIR" or stat.S_ISREG(st.st_mode)):
        return
    what = "not a regular file" if st.st_uid == os.getuid() else f"owned by uid {st.st_uid}"
    detail = f"{where} is {what}, not the user's own cache (uid {os.getuid()})"
    trail.append(Attempt(SourceKind.CCACHE.value, "failed", detail, Reason.NO_CREDENTIALS.value))
    raise CredentialError(
        detail, hint="KRB5CCNAME must name a cache the user owns; run kinit as the user"
    )


def _keytab_source(plan: LocalPlan, spns: _Candidates, trail: list[Attempt]) -> SourceToken:
    import gssapi

    from ..krb5 import gss

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
    tok = first_token(spns, creds, who, trail, SourceKind.KEYTAB, _krb5_failure(who))
    trail.append(Attempt(SourceKind.KEYTAB.value, "ok", f"{tok.principal} from keytab {keytab}"))
    return tok


def prepare(*, rehearse: bool = False) -> None:
    """Worker, host namespaces, root, before any plan: the worker's own environment
    (GSS_USE_PROXY=no before the mech glue loads) and the host side of the boundary. A
    prepared worker (child.Ready) runs this before its request arrives, with `rehearse`:
    then its plan's and result's way too (child.rehearse), a failure as on a repeat
    impersonated access and a token as for an own ticket."""
    if _prepared:
        return
    os.environ.clear()
    os.environ.update(PATH="/usr/bin:/bin", GSS_USE_PROXY="no")
    boundary.preload()
    if rehearse:
        boundary.rehearse()
        child.rehearse(run, _REHEARSAL, partial(rehearsal_result, SourceKind.CCACHE, True))
        child.rehearse(run, _REHEARSAL, partial(rehearsal_result, SourceKind.CCACHE))
    _prepared.append(True)


_prepared: list[bool] = []

# what a prepared worker rehearses with: nobody's (uid 65534, no caller), never sent anywhere
_REHEARSAL = LocalPlan(
    REHEARSAL_HOST, None, False, identity.Identity(65534, 65534, None),
    identity.Target(65534, 65534), -1, namespaces.NamespacePlan(()),
    CcacheChoice(None, "default"), None, None, None,
)  # fmt: skip


def run(plan: LocalPlan) -> dict[str, object]:
    """Worker body: SourceToken JSON plus the trail, or UpcallError carrying the trail."""
    trail: list[Attempt] = []
    try:
        prepare()
        if plan.krb5_config:
            os.environ["KRB5_CONFIG"] = plan.krb5_config  # -k: a path in the caller's namespace
        status = boundary.open_status()
        boundary.enter(plan.pidfd, plan.ns.flags if plan.pidfd >= 0 else 0)
        boundary.drop(plan.target, status)
        os.close(status)
        if plan.ns.enter and plan.pidfd >= 0:
            trail.append(Attempt("namespaces", "ok", "entered " + ",".join(plan.ns.enter)))
        trail.append(Attempt("privileges", "ok", f"uid {plan.target.uid}, no capabilities"))
        try:
            os.chdir("/")
        except OSError as e:
            raise NamespaceError(f"cannot change to the caller's root: {e.strerror}") from None
        who = plan.ident.name or f"uid {plan.ident.uid}"
        spns = _Candidates(
            candidates(plan.host, plan.ip, trust_dns=plan.trust_dns, resolver=SystemResolver())
        )
        last_error: UpcallError | None = None
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
        e.trail = trail
        raise
