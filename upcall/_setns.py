"""Raw layer: setns(2) for the namespace types pyroute2 does not cover (it is netns-only).

Python 3.11 has no os.setns (3.12 does). ABI-mode cffi on the C library.
"""

from __future__ import annotations

import os
from typing import Any

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

_ffi: Any = None
_lib: Any = None


def setns(fd: int, nstype: int) -> None:
    global _ffi, _lib
    if _lib is None:
        import cffi

        _ffi = cffi.FFI()
        _ffi.cdef("int setns(int fd, int nstype);")
        _lib = _ffi.dlopen(None)
    if _lib.setns(fd, nstype) != 0:
        err = _ffi.errno
        raise OSError(err, f"setns: {os.strerror(err)}")
