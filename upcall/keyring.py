"""The kernel keyring edge: describe the key, then instantiate it or negate it.

python-keyutils covers describe; the handler-only calls (assume_authority, instantiate, negate)
come from the raw cffi layer. Each step's OSError becomes a KeyringError with the step named.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from . import _keyctl
from .errors import KeyringError, KeyUnavailable

if TYPE_CHECKING:
    from .origin import KeyInfo


def describe_raw(serial: int) -> str:
    """keyctl_describe: `type;uid;gid;perm;description`."""
    import keyutils

    try:
        raw = keyutils.describe_key(serial)
    except keyutils.Error as e:
        raise KeyUnavailable(f"cannot describe key {serial}: {e.args[-1]}") from e
    return str(raw.decode("utf-8", errors="replace"))


def describe(serial: int) -> KeyInfo:
    from .origin import parse_describe

    return parse_describe(describe_raw(serial))


def assume_authority(serial: int) -> None:
    try:
        _keyctl.assume_authority(serial)
    except OSError as e:
        raise KeyringError(
            f"cannot assume authority over key {serial}: {e.strerror}",
            hint="run only by /sbin/request-key for a key under construction",
        ) from e


def instantiate(serial: int, payload: bytes) -> None:
    for attempt in (1, 2):
        try:
            _keyctl.instantiate(serial, payload)
            return
        except OSError as e:
            # Quota pressure can be transient (cifs.upcall retries once, too).
            if attempt == 1 and e.errno in (errno.EDQUOT, errno.ENOMEM):
                continue
            raise KeyringError(f"cannot instantiate key {serial}: {e.strerror}") from e


def negate(serial: int, timeout: int) -> None:
    try:
        _keyctl.negate(serial, timeout)
    except OSError as e:
        raise KeyringError(f"cannot negate key {serial}: {e.strerror}") from e
