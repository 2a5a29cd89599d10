"""Which credential cache to use for the caller. Pure.

KRB5CCNAME comes from the caller's environment, which the caller controls: it is validated
here, and the cache is opened only after the helper has become the caller's uid, so a hostile
value can at worst name a file the user could read anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

ENVIRON_MAX = 128 * 1024  # cifs.upcall's ENV_BUF_MAX
CCNAME_MAX = 4096
# Types that can hold a user's tickets and that we can open after becoming the user.
# MEMORY is per process (never the caller's); API is macOS; KEYRING:session/process/thread
# name the helper's own keyrings, not the caller's.
_ALLOWED_TYPES = {"FILE", "DIR", "KEYRING", "KCM"}
_KEYRING_OK = ("persistent:", "user:")


@dataclass(frozen=True)
class CcacheChoice:
    name: str | None  # None: the krb5 default for the uid (krb5.conf default_ccache_name)
    origin: str  # "environ", "default"
    note: str = ""  # why an environment value was not used


def krb5ccname_from_environ(environ: bytes) -> str | None:
    """The first non-empty KRB5CCNAME= in a NUL-separated environment block."""
    for entry in environ.split(b"\0"):
        if entry.startswith(b"KRB5CCNAME=") and len(entry) > len(b"KRB5CCNAME="):
            return entry[len(b"KRB5CCNAME=") :].decode("utf-8", errors="replace")
    return None


def validate_ccname(value: str) -> str | None:
    """Return why `value` is not acceptable, or None."""
    if len(value) > CCNAME_MAX:
        return "KRB5CCNAME is too long"
    if not value.isprintable() or "\ufffd" in value:
        return "KRB5CCNAME has control, separator or non-UTF-8 characters"
    kind, sep, residual = value.partition(":")
    if not sep or "/" in kind:
        kind, residual = "FILE", value
    if kind not in _ALLOWED_TYPES:
        return f"KRB5CCNAME type {kind} cannot hold the caller's tickets"
    if kind in ("FILE", "DIR") and not residual.lstrip(":").startswith("/"):
        return f"KRB5CCNAME {kind} path is not absolute"
    if kind == "KEYRING" and not residual.startswith(_KEYRING_OK):
        return "KRB5CCNAME keyring is the caller's session or process keyring, unreachable here"
    return None


def choose(environ: bytes | None, *, probe: bool) -> CcacheChoice:
    """Pick the cache: the caller's KRB5CCNAME when probing and valid, else the default."""
    if not probe:
        return CcacheChoice(None, "default", "environment not probed")
    if environ is None:
        return CcacheChoice(None, "default", "caller environment unreadable")
    value = krb5ccname_from_environ(environ)
    if value is None:
        return CcacheChoice(None, "default", "caller has no KRB5CCNAME")
    why = validate_ccname(value)
    if why:
        return CcacheChoice(None, "default", why)
    return CcacheChoice(value, "environ")
