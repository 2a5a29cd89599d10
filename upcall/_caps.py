"""Raw layer: prctl(2) and capget/capset(2) for giving up every capability.

Python has no binding for these; names and numbers mirror <linux/prctl.h>, <linux/securebits.h>
and <linux/capability.h>.
"""

from __future__ import annotations

from ._ffi import check, ffi, libc

PR_SET_KEEPCAPS = 8
PR_GET_SECUREBITS = 27
PR_SET_SECUREBITS = 28
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

SECBIT_NOROOT = 1 << 0
SECBIT_NOROOT_LOCKED = 1 << 1
SECBIT_NO_SETUID_FIXUP = 1 << 2
SECBIT_NO_SETUID_FIXUP_LOCKED = 1 << 3
SECBIT_KEEP_CAPS_LOCKED = 1 << 5
SECBIT_NO_CAP_AMBIENT_RAISE = 1 << 6
SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 7

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    ul = [ffi.cast("unsigned long", a) for a in (arg2, arg3, arg4, arg5)]
    return check(libc.prctl(option, *ul), f"prctl({option})")


def capset_zero() -> None:
    """Empty the effective, permitted and inheritable sets of this thread."""
    hdr = ffi.new("struct cap_header *", {"version": _LINUX_CAPABILITY_VERSION_3, "pid": 0})
    data = ffi.new("struct cap_data[2]")
    check(libc.capset(hdr, data), "capset")


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this thread, 64-bit masks."""
    hdr = ffi.new("struct cap_header *", {"version": _LINUX_CAPABILITY_VERSION_3, "pid": 0})
    data = ffi.new("struct cap_data[2]")
    check(libc.capget(hdr, data), "capget")
    lo, hi = data[0], data[1]
    return (
        lo.effective | hi.effective << 32,
        lo.permitted | hi.permitted << 32,
        lo.inheritable | hi.inheritable << 32,
    )
