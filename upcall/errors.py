"""One exception type per failure class, each with a stable reason code and a hint.

The reason codes are part of the interface: they appear in the syslog line (`reason=`), in
`--dry-run --json` output, and scripts match on them.
"""

from __future__ import annotations

import enum

from .trail import Attempt


class Reason(enum.Enum):
    """Why an upcall failed. Values are the stable strings printed in logs."""

    BAD_ARGUMENTS = "bad-arguments"
    KEY_UNAVAILABLE = "key-unavailable"
    FOREIGN_KEY = "foreign-key"
    BAD_DESCRIPTION = "bad-description"
    UNSUPPORTED_VERSION = "unsupported-version"
    UNSUPPORTED_MECH = "unsupported-mech"
    CALLER_GONE = "caller-gone"
    NAMESPACE = "namespace-failed"
    PRIVILEGE_DROP = "privilege-drop-failed"
    NO_CREDENTIALS = "no-credentials"
    EXPIRED_CREDENTIALS = "expired-credentials"
    KEYTAB = "keytab-failed"
    UNKNOWN_SERVER = "unknown-server-principal"
    KDC_UNREACHABLE = "kdc-unreachable"
    KDC_REFUSED = "kdc-refused"
    CLOCK_SKEW = "clock-skew"
    GSS_FAILURE = "gss-failure"
    POLICY = "policy-denied"
    BAD_POLICY = "bad-policy"
    PROXY_UNAVAILABLE = "proxy-unavailable"
    PROXY_NO_SERVICE = "proxy-no-service"
    S4U2SELF_REFUSED = "s4u2self-refused"
    S4U2PROXY_REFUSED = "s4u2proxy-refused"
    DEADLINE = "deadline-exceeded"
    KEYRING = "keyring-failed"
    INTERNAL = "internal-error"


class UpcallError(Exception):
    """Base class: carries a Reason and a hint a person can act on."""

    reason: Reason = Reason.INTERNAL
    default_hint = ""

    def __init__(self, message: str, *, hint: str | None = None, reason: Reason | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        if reason is not None:
            self.reason = reason
        # Attempts made before the failure, for the trail (JSON only at the worker's pipe).
        self.trail: list[Attempt] = []

    def __str__(self) -> str:
        return self.message


class BadArguments(UpcallError):
    reason = Reason.BAD_ARGUMENTS


class KeyUnavailable(UpcallError):
    reason = Reason.KEY_UNAVAILABLE
    default_hint = "the key was revoked or timed out before the helper ran; retry the access"


class ForeignKey(UpcallError):
    reason = Reason.FOREIGN_KEY
    default_hint = (
        "only keys made by cifs.ko are served; a user-made cifs.spnego key is an attack "
        "(CVE-2026-46243): update the kernel"
    )


class BadDescription(UpcallError):
    reason = Reason.BAD_DESCRIPTION
    default_hint = "the key description does not follow the kernel's cifs.spnego format"


class UnsupportedVersion(BadDescription):
    reason = Reason.UNSUPPORTED_VERSION
    default_hint = "the kernel speaks a newer upcall version than this helper; update cifs-upcall"


class UnsupportedMech(UpcallError):
    reason = Reason.UNSUPPORTED_MECH


class CallerGone(UpcallError):
    reason = Reason.CALLER_GONE
    default_hint = "the process that triggered the upcall exited; retry the access"


class NamespaceError(UpcallError):
    reason = Reason.NAMESPACE


class PrivilegeDropError(UpcallError):
    reason = Reason.PRIVILEGE_DROP


class CredentialError(UpcallError):
    """A credential source could not produce a token; `reason` says why."""

    reason = Reason.NO_CREDENTIALS


class PolicyError(UpcallError):
    reason = Reason.POLICY


class BadPolicy(UpcallError):
    reason = Reason.BAD_POLICY
    default_hint = "fix the policy file; until then every upcall fails closed"


class DeadlineExceeded(UpcallError):
    reason = Reason.DEADLINE
    default_hint = "a KDC, DNS or gssproxy did not answer in time; check that they are up"


class KeyringError(UpcallError):
    reason = Reason.KEYRING


class WorkerProtocolError(UpcallError):
    """A worker's result broke the pipe protocol (too large, malformed, or claims it may not
    make): the worker is hostile once it has entered a caller, so nothing of it is used."""

    reason = Reason.INTERNAL
    default_hint = "a credential worker misbehaved; the caller's krb5 plugins may be hostile"


def _registry() -> dict[Reason, type[UpcallError]]:
    """Reason -> the class that owns it, to rebuild a worker's error in the parent."""
    out: dict[Reason, type[UpcallError]] = {}
    todo: list[type[UpcallError]] = [UpcallError]
    while todo:
        cls = todo.pop()
        out.setdefault(cls.reason, cls)
        todo.extend(cls.__subclasses__())
    return out


def rebuild(reason: Reason, message: str, hint: str) -> UpcallError:
    """The parent's copy of an error a worker reported (its class, not a plain UpcallError)."""
    cls = _registry().get(reason, CredentialError)
    return cls(message, hint=hint, reason=reason)
