"""The gssproxy source, run in a forked child that stays root in the host namespaces.

Identity model (C) of notes/gssproxy.md: the child connects as root to a dedicated socket in a
root-only directory, served by `euid = 0`, `impersonate = yes`, `cred_usage = initiate`, and
names the user as a Kerberos principal; gssproxy does S4U2Self at acquire and S4U2Proxy at
init, with the client keytab it holds. The policy (policy.py) already decided that this user
may be impersonated for this server; nothing here widens that.

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
from ..request import IPAddress
from ..spn import SystemResolver, candidates
from .base import Attempt, SourceKind, SourceToken

PROXY_CCACHE = "MEMORY:cifs-upcall-proxy"
KIND = SourceKind.PROXY.value


@dataclass(frozen=True)
class ProxyPlan:
    host: str
    ip: IPAddress | None
    trust_dns: bool
    principal: str
    socket: str


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


def _interpose(socket: str) -> None:
    os.environ.update(
        GSS_USE_PROXY="yes",
        GSSPROXY_BEHAVIOR="REMOTE_ONLY",  # never fall back to local krb5 with root's creds
        GSSPROXY_SOCKET=socket,
        KRB5CCNAME=PROXY_CCACHE,
    )


def _failure(e: object, phase: ProxyPhase, who: str, spn: str, what: str) -> UpcallError:
    c = classify_proxy(getattr(e, "min_code", 0) or 0, phase=phase, who=who, spn=spn)
    gen = getattr(e, "gen_message", None)
    text = gen() if callable(gen) else str(e)
    return CredentialError(f"{what}: {text}", hint=c.hint, reason=c.reason)


def run(plan: ProxyPlan) -> dict[str, object]:
    """The child's body: SourceToken JSON plus the trail, or UpcallError carrying the trail."""
    trail: list[Attempt] = []
    try:
        check_socket_dir(plan.socket)
        _interpose(plan.socket)
        import gssapi  # first libgssapi use: after the environment above

        from .. import gss

        who = plan.principal
        try:
            creds = gssapi.Credentials(
                name=gssapi.Name(who, gssapi.NameType.kerberos_principal),
                usage="initiate",
                mechs=[gss.KRB5],
            )
        except gssapi.exceptions.GSSError as e:
            f = _failure(e, ProxyPhase.ACQUIRE, who, "", f"gssproxy ({plan.socket}) for {who}")
            trail.append(Attempt(KIND, "failed", f.message, f.reason.value))
            raise f from e
        trail.append(Attempt(KIND, "note", f"{who} via {plan.socket} (S4U2Self)"))
        last: UpcallError | None = None
        spns = candidates(plan.host, plan.ip, trust_dns=plan.trust_dns, resolver=SystemResolver())
        for spn in spns:
            try:
                tok = gss.initiate(spn, creds, who=who)
            except gss.GssFailure as e:
                cause = e.__cause__
                f = _failure(cause, ProxyPhase.INIT, who, spn.principal, f"{spn.principal}")
                trail.append(Attempt(KIND, "failed", f.message, f.reason.value))
                last = f
                if f.reason is not Reason.UNKNOWN_SERVER:
                    raise f from e
                continue
            trail.append(Attempt(KIND, "ok", f"{tok.principal} for {tok.spn} (S4U2Proxy)"))
            st = SourceToken(
                SourceKind.PROXY, tok.token, tok.session_key, tok.enctype, tok.principal,
                tok.spn, impersonated=True,
            )  # fmt: skip
            return {"token": st.to_json(), "trail": [a.as_dict() for a in trail]}
        raise last or CredentialError(
            "no service principal candidates", reason=Reason.UNKNOWN_SERVER
        )
    except UpcallError as e:
        e.trail = [a.as_dict() for a in trail]
        raise
