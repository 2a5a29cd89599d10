"""Map GSSAPI/krb5 failures to a Reason and a hint a person can act on. Pure.

python-gssapi reports the krb5 minor status as an unsigned 32-bit number; MIT's com_err codes
are negative (ERROR_TABLE_BASE_krb5 = -1765328384), so they are sign-folded first.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Reason

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
    code = signed(minor)
    reason, hint = _TABLE.get(code, (Reason.GSS_FAILURE, "see the GSS message; run with -d"))
    return Classified(reason, hint.format(who=who, spn=spn), code)
