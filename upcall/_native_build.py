"""Build step (never imported at upcall time): emit `upcall/_native.py`, cffi's out-of-line
ABI module for the C calls no Python library wraps.

ABI mode needs no compiler; out-of-line means the C declarations are parsed here, once, by
pycparser, and the generated module carries them pre-parsed, so an upcall loads no pycparser.
Run by scripts/setup.sh and the Debian build: `python3 upcall/_native_build.py [OUTDIR]`.
"""

from __future__ import annotations

import os
import sys

import cffi

CDEF = """
/* libkeyutils: a request-key handler's own calls (python-keyutils lacks them) */
long keyctl_instantiate(int32_t key, const void *payload, size_t plen, int32_t ring);
long keyctl_negate(int32_t key, unsigned timeout, int32_t ring);
long keyctl_reject(int32_t key, unsigned timeout, unsigned error, int32_t ring);
long keyctl_assume_authority(int32_t key);
long keyctl_set_timeout(int32_t key, unsigned timeout);

/* libc: entering a caller (setns on a pidfd) and dropping every capability */
int setns(int fd, int nstype);
int prctl(int option, ...);
struct cap_header { uint32_t version; int pid; };
struct cap_data { uint32_t effective; uint32_t permitted; uint32_t inheritable; };
int capget(struct cap_header *hdrp, struct cap_data *datap);
int capset(struct cap_header *hdrp, const struct cap_data *datap);
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("upcall._native", None)


def main(argv: list[str]) -> int:
    out = argv[1] if len(argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # emit_python_code writes the module file directly (no build dir, no compiler).
    ffibuilder.emit_python_code(os.path.join(out, "upcall", "_native.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
