"""Raw layer: the pre-built cffi module (`_native.py`, made by `_native_build.py` at install
time) and the C libraries it calls into. Loading it parses nothing: no pycparser at upcall time.
"""

import posix  # not os: the thin client imports this module

TYPE_CHECKING = False  # typing costs ~10 ms at start; the thin client imports this module
if TYPE_CHECKING:
    from typing import Any

try:
    from ._native import ffi as _ffi_module
except ImportError as e:  # a tree that was never built (see _native_build.py)
    raise ImportError(
        "upcall/_native.py is missing: the installation is incomplete "
        "(build it with: python3 upcall/_native_build.py)"
    ) from e

ffi: "Any" = _ffi_module
libc: "Any" = ffi.dlopen(None)
_keyutils: "Any" = None


def keyutils() -> "Any":
    """libkeyutils, opened on first use (the dry-run path never needs it)."""
    global _keyutils
    if _keyutils is None:
        _keyutils = ffi.dlopen("libkeyutils.so.1")
    return _keyutils


def check(rc: int, what: str) -> int:
    """C convention: a negative return sets errno; raise it as OSError naming the call."""
    if rc < 0:
        err = ffi.errno
        raise OSError(err, f"{what}: {posix.strerror(err)}")
    return rc
