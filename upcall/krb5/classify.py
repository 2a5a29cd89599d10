"""Map GSSAPI/krb5 failures to a Reason and a hint a person can act on. Pure.

python-gssapi reports the krb5 minor status as an unsigned 32-bit number; MIT's com_err codes
are negative (ERROR_TABLE_BASE_krb5 = -1765328384), so they are sign-folded first.
"""

from __future__ import annotations

import enum
import errno
from dataclasses import dataclass

from ..errors import Reason

KRB5_BASE = -1765328384


def _kdc(n: int) -> int:
    return KRB5_BASE + n


C_PRINCIPAL_UNKNOWN = _kdc(6)
S_PRINCIPAL_UNKNOWN = _kdc(7)
POLICY = _kdc(12)
BADOPTION = _kdc(13)
CLIENT_REVOKED = _kdc(18)
KEY_EXPIRED = _kdc(23)
PREAUTH_FAILED = _kdc(24)
TKT_EXPIRED = _kdc(32)
SKEW = _kdc(37)
GENERIC = _kdc(60)
CC_NOTFOUND = -1765328243
CC_END = -1765328242
FCC_NOFILE = -1765328189
KT_NOTFOUND = -1765328203
KT_END = -1765328202
KDC_UNREACH = -1765328228
REALM_UNKNOWN = -1765328230
REALM_CANT_RESOLVE = -1765328164

# (reason, hint); "{who}" and "{spn}" are filled in by the caller.
_TABLE: dict[int, tuple[Reason, str]] = {
    CC_NOTFOUND: (Reason.NO_CREDENTIALS, "{who} has no Kerberos tickets: run kinit"),
    CC_END: (Reason.NO_CREDENTIALS, "{who} has no Kerberos tickets: run kinit"),
    FCC_NOFILE: (Reason.NO_CREDENTIALS, "{who} has no Kerberos ticket cache: run kinit"),
    TKT_EXPIRED: (Reason.EXPIRED_CREDENTIALS, "{who}'s tickets have expired: run kinit"),
    S_PRINCIPAL_UNKNOWN: (
        Reason.UNKNOWN_SERVER,
        "the KDC has no principal {spn}: check the server name or its SPNs",
    ),
    C_PRINCIPAL_UNKNOWN: (Reason.KDC_REFUSED, "the KDC does not know {who}'s principal"),
    CLIENT_REVOKED: (Reason.KDC_REFUSED, "{who}'s account is disabled or locked"),
    KEY_EXPIRED: (Reason.KDC_REFUSED, "{who}'s password has expired"),
    PREAUTH_FAILED: (Reason.KEYTAB, "the key in the keytab is wrong (kvno or password changed?)"),
    POLICY: (Reason.KDC_REFUSED, "the KDC's policy refused the request for {spn}"),
    BADOPTION: (Reason.KDC_REFUSED, "the KDC refused an option of the request for {spn}"),
    SKEW: (Reason.CLOCK_SKEW, "the clocks of this machine and the KDC differ: fix time sync"),
    KT_NOTFOUND: (Reason.KEYTAB, "the keytab has no key for {who}"),
    KT_END: (Reason.KEYTAB, "the keytab is empty or has no usable key for {who}"),
    KDC_UNREACH: (Reason.KDC_UNREACHABLE, "no KDC answered: check the network and krb5.conf"),
    REALM_UNKNOWN: (Reason.KDC_UNREACHABLE, "no KDC is configured for the realm (krb5.conf)"),
    REALM_CANT_RESOLVE: (Reason.KDC_UNREACHABLE, "the KDC's name does not resolve"),
}


@dataclass(frozen=True)
class Classified:
    reason: Reason
    hint: str
    code: int

    @property
    def other_name_may_help(self) -> bool:
        """Only an unknown server principal is worth retrying under another SPN."""
        return self.reason is Reason.UNKNOWN_SERVER


def signed(minor: int) -> int:
    return minor - (1 << 32) if minor >= 1 << 31 else minor


def classify(minor: int, *, who: str, spn: str = "the server") -> Classified:
    """Pure: a krb5 minor status -> Reason and a hint naming the user and the server."""
    code = signed(minor)
    reason, hint = _TABLE.get(code, (Reason.GSS_FAILURE, "see the GSS message; run with -d"))
    return Classified(reason, hint.format(who=who, spn=spn), code)


# --- gssproxy: the interposer adds MAP_ERROR_BASE to every minor code it hands back ------------

PROXY_BASE = 0x04200000  # gssproxy gss_plugin.c MAP_ERROR_BASE
_ERRNO_MAX = 4096  # below this, (minor - base) is an errno of the client's transport


class ProxyPhase(enum.Enum):
    ACQUIRE = "acquire"  # gss_acquire_cred through gssproxy: S4U2Self happens here
    INIT = "init"  # gss_init_sec_context through gssproxy: S4U2Proxy happens here


_ERRNO: dict[int, tuple[Reason, str]] = {
    errno.ENOENT: (Reason.PROXY_UNAVAILABLE, "gssproxy's socket does not exist: start gssproxy"),
    errno.ECONNREFUSED: (Reason.PROXY_UNAVAILABLE, "gssproxy is not running (stale socket)"),
    errno.EACCES: (Reason.PROXY_UNAVAILABLE, "no permission on gssproxy's socket"),
    errno.EIO: (
        Reason.PROXY_NO_SERVICE,
        "gssproxy has no service for root on this socket: check the [service/...] with "
        "euid = 0 and socket = <this path> (gssproxy-conf check)",
    ),
    errno.ETIMEDOUT: (Reason.DEADLINE, "gssproxy did not answer: is it hung or overloaded?"),
}
# KDC refusals of the impersonation itself, by the phase in which they surface.
_REFUSALS = {POLICY, BADOPTION, C_PRINCIPAL_UNKNOWN, CLIENT_REVOKED, GENERIC}
_S4U_HINT = {
    ProxyPhase.ACQUIRE: (
        Reason.S4U2SELF_REFUSED,
        "the KDC refused a ticket for {who} to the client's own account (S4U2Self): is the "
        "account known, enabled, and the client keytab current?",
    ),
    ProxyPhase.INIT: (
        Reason.S4U2PROXY_REFUSED,
        "the KDC refused to let the client act for {who} at {spn} (S4U2Proxy): either {who} "
        "may not be delegated (Protected Users, 'sensitive and cannot be delegated') or the "
        "client account lacks the right (msDS-AllowedToDelegateTo with protocol transition, "
        "or the server's msDS-AllowedToActOnBehalfOfOtherIdentity for RBCD); the KDC log's "
        "reason= says which",
    ),
}


def proxy_code(minor: int) -> tuple[bool, int]:
    """(is an errno, value) of a minor status that came back through the interposer."""
    m = (minor - PROXY_BASE) % (1 << 32)
    if m < _ERRNO_MAX:
        return True, m
    return False, signed(m)


# An own-keytab service (no impersonate) that finds no key for the user in its client_keytab
# falls back to its store ccache, which does not exist either: seen as FCC_NOFILE.
_NO_CLIENT_KEY = {CC_NOTFOUND, CC_END, FCC_NOFILE, KT_NOTFOUND, KT_END}
_NO_CLIENT_KEY_HINT = (
    "gssproxy found no key for {who} in the client_keytab of this socket's service: is the "
    "keytab there, readable by gssproxy, and does it hold {who} (klist -k)?"
)

_STALE_CLIENT_KEY_HINT = (
    "the KDC rejected {who}'s key from the client_keytab of this socket's gssproxy service: "
    "the password changed since the keytab was exported; export it again"
)


def classify_proxy(
    minor: int, *, phase: ProxyPhase, who: str, spn: str = "", impersonation: bool = True
) -> Classified:
    """`impersonation=False` for an own-keytab service: its KDC refusals concern the user's own
    AS/TGS requests, so they are classified like own tickets', never as S4U refusals."""
    is_errno, code = proxy_code(minor)
    spn = spn or "the server"
    if minor == 0:
        reason, hint = Reason.GSS_FAILURE, "gssproxy gave no minor code: run gssproxy with -d"
    elif is_errno:
        reason, hint = _ERRNO.get(
            code, (Reason.PROXY_UNAVAILABLE, f"gssproxy transport error (errno {code})")
        )
    elif code in _REFUSALS and impersonation:
        reason, hint = _S4U_HINT[phase]
    elif code in _NO_CLIENT_KEY and not impersonation and phase is ProxyPhase.ACQUIRE:
        reason, hint = Reason.KEYTAB, _NO_CLIENT_KEY_HINT
    elif code == PREAUTH_FAILED and not impersonation:
        reason, hint = Reason.KEYTAB, _STALE_CLIENT_KEY_HINT
    else:
        reason, hint = _TABLE.get(code, (Reason.GSS_FAILURE, "see the message and gssproxy's log"))
    return Classified(reason, hint.format(who=who, spn=spn), code)
