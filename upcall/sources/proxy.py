"""The gssproxy source, run in a forked child that stays root in the host namespaces.

Identity model (C) of notes/gssproxy.md: the child connects as root to a dedicated socket in a
root-only directory, served by `euid = 0`, `impersonate = yes`, `cred_usage = initiate`, and
names the user as a Kerberos principal; gssproxy does S4U2Self at acquire and S4U2Proxy at
init, with the client keytab it holds. The policy (policy.py) already decided that this user
may be impersonated for this server; nothing here widens that.

An own-keytab socket (ProxyKind.OWN_KEYTAB, e.g. a protected user's service) is driven the same
way, but its service has no `impersonate`: gssproxy gets the user's TGT with the user's own key
from its `client_keytab` (AS exchange) and a service ticket with it. The token is reported as
source `proxy-keytab`, not impersonated, and KDC refusals are not S4U refusals there.

The interposer reads GSS_USE_PROXY and GSSPROXY_BEHAVIOR once, at libgssapi's first call, so
they are set before gssapi is imported. KRB5CCNAME=MEMORY: keeps the interposer from writing its
X-GSSPROXY entry into any file ccache (it would wipe a FILE cache: krb5_cc_initialize).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from ..classify import ProxyPhase, classify_proxy
from ..errors import CredentialError, Reason, UpcallError
from ..policy import ProxyKind
from ..request import IPAddress
from ..spn import SpnCandidate, SystemResolver, candidates
from .base import Attempt, SourceKind
from .spn_attempts import first_token

PROXY_CCACHE = "MEMORY:cifs-upcall-proxy"


@dataclass(frozen=True)
class ProxyPlan:
    host: str
    ip: IPAddress | None
    trust_dns: bool
    principal: str
    socket: str
    kind: ProxyKind = ProxyKind.IMPERSONATE
    krb5_config: str | None = None  # the host's krb5.conf (--host-krb5-config)

    @property
    def impersonates(self) -> bool:
        return self.kind is ProxyKind.IMPERSONATE

    @property
    def source(self) -> SourceKind:
        return SourceKind.PROXY if self.impersonates else SourceKind.PROXY_KEYTAB

    @property
    def label(self) -> str:
        """The child's name in deadline and crash messages."""
        return "gssproxy (impersonation)" if self.impersonates else "gssproxy (own keytab)"

    def how(self, phase: ProxyPhase) -> str:
        """What gssproxy did with the KDC in `phase`, for the trail."""
        if phase is ProxyPhase.ACQUIRE:
            return "S4U2Self" if self.impersonates else "own keytab, no S4U"
        return "S4U2Proxy" if self.impersonates else "own TGT"


def check_socket_dir(socket: str) -> None:
    """Only root may create the socket: otherwise anyone could serve us forged credentials."""
    d = os.path.dirname(socket)
    try:
        st = os.stat(d)
    except OSError as e:
        raise CredentialError(
            f"gssproxy socket directory {d}: {e.strerror}",
            reason=Reason.PROXY_UNAVAILABLE,
            hint="is gssproxy running with the cifs-upcall service (tmpfiles.d makes the dir)?",
        ) from None
    if st.st_uid != 0 or st.st_mode & 0o022 or not stat.S_ISDIR(st.st_mode):
        raise CredentialError(
            f"gssproxy socket directory {d} is not root-only (uid {st.st_uid}, mode "
            f"{st.st_mode & 0o7777:o})",
            reason=Reason.PROXY_UNAVAILABLE,
            hint=f"make {d} root:root 0700: a user who can create the socket can forge tickets",
        )


def _interpose(socket: str, krb5_config: str | None) -> None:
    """The worker's whole environment: nothing inherited from whoever started the helper."""
    os.environ.clear()
    os.environ.update(
        PATH="/usr/bin:/bin",
        GSS_USE_PROXY="yes",
        GSSPROXY_BEHAVIOR="REMOTE_ONLY",  # never fall back to local krb5 with root's creds
        GSSPROXY_SOCKET=socket,
        KRB5CCNAME=PROXY_CCACHE,
    )
    if krb5_config:
        os.environ["KRB5_CONFIG"] = krb5_config  # the host's, as gssproxy's


def _drop() -> None:
    """Stay uid 0 (gssproxy serves root's service to uid 0 peers; the socket directory is
    root's own) but hold no capability: nothing here needs one, and the KDC's and gssproxy's
    replies are parsed by libkrb5 in this process."""
    from .. import boundary
    from ..identity import Target

    status = boundary.open_status()
    try:
        boundary.enter(-1, 0)  # supplementary groups only: no caller is entered
        boundary.drop(Target(0, 0), status)
    finally:
        os.close(status)


def _failure(e: object, plan: ProxyPlan, phase: ProxyPhase, spn: str, what: str) -> UpcallError:
    minor = getattr(e, "min_code", 0) or 0
    c = classify_proxy(
        minor, phase=phase, who=plan.principal, spn=spn, impersonation=plan.impersonates
    )
    gen = getattr(e, "gen_message", None)
    text = gen() if callable(gen) else str(e)
    return CredentialError(f"{what}: {text}", hint=c.hint, reason=c.reason)


def run(plan: ProxyPlan) -> dict[str, object]:
    """The child's body: SourceToken JSON plus the trail, or UpcallError carrying the trail."""
    trail: list[Attempt] = []
    try:
        _drop()
        check_socket_dir(plan.socket)
        _interpose(plan.socket, plan.krb5_config)
        import gssapi  # first libgssapi use: after the environment above

        from .. import gss

        who, kind = plan.principal, plan.source.value
        try:
            creds = gssapi.Credentials(
                name=gssapi.Name(who, gssapi.NameType.kerberos_principal),
                usage="initiate",
                mechs=[gss.KRB5],
            )
        except gssapi.exceptions.GSSError as e:
            f = _failure(e, plan, ProxyPhase.ACQUIRE, "", f"gssproxy ({plan.socket}) for {who}")
            trail.append(Attempt(kind, "failed", f.message, f.reason.value))
            raise f from e
        how = plan.how(ProxyPhase.ACQUIRE)
        trail.append(Attempt(kind, "note", f"{who} via {plan.socket} ({how})"))
        spns = candidates(plan.host, plan.ip, trust_dns=plan.trust_dns, resolver=SystemResolver())

        def translate(e: Exception, spn: SpnCandidate) -> tuple[str, UpcallError]:
            # gssproxy's minor codes carry an offset and mean S4U refusals here: reclassify
            f = _failure(e.__cause__, plan, ProxyPhase.INIT, spn.principal, spn.principal)
            return f.message, f

        st = first_token(
            spns, creds, who, trail, plan.source, translate, impersonated=plan.impersonates
        )
        trail.append(
            Attempt(kind, "ok", f"{st.principal} for {st.spn} ({plan.how(ProxyPhase.INIT)})")
        )
        return {"token": st.to_json(), "trail": [a.as_dict() for a in trail]}
    except UpcallError as e:
        e.trail = [a.as_dict() for a in trail]
        raise
