"""The GSSAPI edge: make a krb5 initiator token and read its full session key.

No mutual-auth flag: the kernel makes one round trip and never hands the server's AP-REP back,
so the context must complete on the first step (and MIT only releases the key of a complete
context). The key comes from GSS_C_INQ_SSPI_SESSION_KEY: the initiator subkey, full length
(32 bytes for aes256-cts), which SMB 3.1.1 with AES-256 ciphers needs whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gssapi
import gssapi.raw

from ..errors import CredentialError
from .classify import Classified, classify
from .spn import SpnCandidate

INQ_SSPI_SESSION_KEY = gssapi.OID.from_int_seq("1.2.840.113554.1.2.2.5.5")
KRB5 = gssapi.MechType.kerberos
# Not mutual: see above. Integrity is requested because python-gssapi treats empty flags as
# "the defaults", which include mutual authentication.
FLAGS = gssapi.RequirementFlag.integrity


@dataclass(frozen=True)
class KrbToken:
    token: bytes  # RFC 1964-framed krb5 AP-REQ token
    session_key: bytes
    enctype: int
    principal: str
    spn: str


def failure(e: gssapi.exceptions.GSSError, what: str, who: str, spn: str = "") -> CredentialError:
    """A krb5 failure of the user's own credentials, classified once (classify.py's table)."""
    c: Classified = classify(e.min_code, who=who, spn=spn or "the server")
    return CredentialError(f"{what}: {e.gen_message()}", hint=c.hint, reason=c.reason)


class InitFailure(Exception):
    """gss_init_sec_context failed for one SPN: the raw GSS error, for the source to classify
    with its own table (a gssproxy minor code means something else than a krb5 one)."""

    def __init__(self, error: gssapi.exceptions.GSSError, spn: SpnCandidate):
        super().__init__(str(error))
        self.error = error
        self.spn = spn


def _enctype(oid_bytes: bytes) -> int:
    # 1.2.840.113554.1.2.2.4.<etype>: the last base-128 arc of the OID content bytes.
    prefix = bytes.fromhex("2a864886f71201020204")
    value = 0
    for b in oid_bytes[len(prefix) :]:
        value = (value << 7) | (b & 0x7F)
    return value


def initiate(spn: SpnCandidate, creds: Any = None, *, who: str) -> KrbToken:
    """One krb5 initiator step towards `spn` (GSS host-based name, KRB5_NT_SRV_HST)."""
    try:
        target = gssapi.Name(spn.gss_name, gssapi.NameType.hostbased_service)
        ctx = gssapi.SecurityContext(
            name=target, mech=KRB5, flags=FLAGS, creds=creds, usage="initiate"
        )
        token = ctx.step()
    except gssapi.exceptions.GSSError as e:
        raise InitFailure(e, spn) from None
    if not ctx.complete:
        raise CredentialError("krb5 context did not complete in one step (mutual auth?)")
    key, oid = gssapi.raw.inquire_sec_context_by_oid(ctx, INQ_SSPI_SESSION_KEY)
    return KrbToken(
        token=bytes(token),
        session_key=bytes(key),
        enctype=_enctype(bytes(oid)),
        principal=str(ctx.initiator_name),
        spn=spn.principal,
    )
