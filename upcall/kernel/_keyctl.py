"""Raw layer: the libkeyutils calls python-keyutils does not wrap (a request-key handler's own).

Mirrors the C API one-to-one; errors become OSError with errno.
"""

from .._ffi import check, keyutils


def instantiate(key: int, payload: bytes, ring: int = 0) -> None:
    check(keyutils().keyctl_instantiate(key, payload, len(payload), ring), "keyctl_instantiate")


def negate(key: int, timeout: int, ring: int = 0) -> None:
    check(keyutils().keyctl_negate(key, timeout, ring), "keyctl_negate")


def reject(key: int, timeout: int, error: int, ring: int = 0) -> None:
    check(keyutils().keyctl_reject(key, timeout, error, ring), "keyctl_reject")


def assume_authority(key: int) -> None:
    check(keyutils().keyctl_assume_authority(key), "keyctl_assume_authority")


def set_timeout(key: int, timeout: int) -> None:
    check(keyutils().keyctl_set_timeout(key, timeout), "keyctl_set_timeout")
