"""The kernel keyring edge: describe the key, then instantiate it or negate it.

python-keyutils covers describe; the handler-only calls (assume_authority, instantiate, negate)
come from the raw cffi layer. Each step's OSError becomes a KeyringError with the step named.

The thin client instantiates and negates through this module: on their success path it imports
only errno and the raw layer (errors.py, with dataclasses and typing behind it, costs a
request ~19 ms of imports and is loaded only to raise).
"""

import errno

from . import _keyctl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .origin import KeyInfo


def _keyring_error(message: str, hint: str = "") -> Exception:
    from ..errors import KeyringError

    return KeyringError(message, hint=hint)


def describe_raw(serial: int) -> str:
    """keyctl_describe: `type;uid;gid;perm;description`."""
    import keyutils

    try:
        raw = keyutils.describe_key(serial)
    except keyutils.Error as e:
        from ..errors import KeyUnavailable

        raise KeyUnavailable(f"cannot describe key {serial}: {e.args[-1]}") from e
    return str(raw.decode("utf-8", errors="replace"))


def describe(serial: int) -> "KeyInfo":
    """Client or in-process, root: the key's type, owner, permissions and description."""
    from .origin import parse_describe

    return parse_describe(describe_raw(serial))


def assume_authority(serial: int) -> None:
    """Client, root, as request-key started it: act for the key under construction.
    Raises KeyringError (not run by request-key, or the key is gone)."""
    try:
        _keyctl.assume_authority(serial)
    except OSError as e:
        raise _keyring_error(
            f"cannot assume authority over key {serial}: {e.strerror}",
            hint="run only by /sbin/request-key for a key under construction",
        ) from e


def instantiate(serial: int, payload: bytes) -> None:
    """Client: the key becomes the payload (one retry on quota pressure). KeyringError."""
    for attempt in (1, 2):
        try:
            _keyctl.instantiate(serial, payload)
            return
        except OSError as e:
            # Quota pressure can be transient (cifs.upcall retries once, too).
            if attempt == 1 and e.errno in (errno.EDQUOT, errno.ENOMEM):
                continue
            raise _keyring_error(f"cannot instantiate key {serial}: {e.strerror}") from e


def negate(serial: int, timeout: int) -> None:
    """Client: the key becomes negative for `timeout` seconds. KeyringError."""
    try:
        _keyctl.negate(serial, timeout)
    except OSError as e:
        raise _keyring_error(f"cannot negate key {serial}: {e.strerror}") from e
