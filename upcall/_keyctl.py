"""Raw layer: the libkeyutils calls python-keyutils does not wrap (a request-key handler's own).

Mirrors the C API one-to-one; errors become OSError with errno. ABI-mode cffi: no compiler.
"""

from __future__ import annotations

import os
from typing import Any

_ffi: Any = None
_lib: Any = None


def _load() -> tuple[Any, Any]:
    global _ffi, _lib
    if _lib is None:
        import cffi

        ffi = cffi.FFI()
        ffi.cdef(
            """
            long keyctl_instantiate(int32_t key, const void *payload, size_t plen, int32_t ring);
            long keyctl_negate(int32_t key, unsigned timeout, int32_t ring);
            long keyctl_reject(int32_t key, unsigned timeout, unsigned error, int32_t ring);
            long keyctl_assume_authority(int32_t key);
            long keyctl_set_timeout(int32_t key, unsigned timeout);
            """
        )
        _lib = ffi.dlopen("libkeyutils.so.1")
        _ffi = ffi
    return _ffi, _lib


def _check(rc: int, what: str) -> int:
    if rc < 0:
        err = _load()[0].errno
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def instantiate(key: int, payload: bytes, ring: int = 0) -> None:
    _ffi, lib = _load()
    _check(lib.keyctl_instantiate(key, payload, len(payload), ring), "keyctl_instantiate")


def negate(key: int, timeout: int, ring: int = 0) -> None:
    _check(_load()[1].keyctl_negate(key, timeout, ring), "keyctl_negate")


def reject(key: int, timeout: int, error: int, ring: int = 0) -> None:
    _check(_load()[1].keyctl_reject(key, timeout, error, ring), "keyctl_reject")


def assume_authority(key: int) -> None:
    _check(_load()[1].keyctl_assume_authority(key), "keyctl_assume_authority")


def set_timeout(key: int, timeout: int) -> None:
    _check(_load()[1].keyctl_set_timeout(key, timeout), "keyctl_set_timeout")
