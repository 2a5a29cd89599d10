"""Only for cffi_modules: the out-of-line (ABI mode) cffi builder emits upcall/_native.py.

Everything else is in pyproject.toml. With CIFS_UPCALL_REQUIRE_FFI=1 (debian/rules,
scripts/build-deb.sh) a missing builder is an error; otherwise it is a warning.
"""

import os
import sys
from pathlib import Path

from setuptools import setup

BUILDER = "upcall/_native_build.py"

if (Path(__file__).resolve().parent / BUILDER).is_file():
    setup(cffi_modules=[f"{BUILDER}:ffibuilder"])
elif os.environ.get("CIFS_UPCALL_REQUIRE_FFI") == "1":
    sys.exit(f"setup.py: {BUILDER} is missing: cannot generate upcall/_native.py")
else:
    print(f"setup.py: WARNING: {BUILDER} is missing; upcall/_native.py not built", file=sys.stderr)
    setup()
