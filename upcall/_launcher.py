"""Install step: write the `cifs-upcall` launcher request-key runs. Never imported at run time.

The launcher starts Python with `-I -S`: no site (a venv's site and an editable install's path
finder cost ~20 ms, and nothing from PYTHON* or a user site may reach a root process), so it
puts the package directory and Debian's dist-packages (python3-gssapi, -keyutils, -cffi, -yaml)
on sys.path itself, after the standard library, then hands over to the thin client.

    python3 -m upcall._launcher DEST [PYTHON]
"""

from __future__ import annotations

import os
import sys

TEMPLATE = """#!{python} -IS
# cifs-upcall: the helper request-key runs (thin client; see upcall/client.py)
import posix  # not os: ~1 ms of imports the thin client does without
import sys
sys.path += {paths!r}  # after the standard library: its modules are found without a look here
from upcall.client import main
code = main()
sys.stdout.flush()
sys.stderr.flush()
posix._exit(code)  # no interpreter teardown: ~3 ms of every upcall, nothing left to clean up
"""
DIST_PACKAGES = "/usr/lib/python3/dist-packages"


def render(python: str, pkgdir: str) -> str:
    paths = [pkgdir] if pkgdir == DIST_PACKAGES else [pkgdir, DIST_PACKAGES]
    return TEMPLATE.format(python=python, paths=paths)


def main(argv: list[str]) -> int:
    dest = argv[1]
    python = argv[2] if len(argv) > 2 else "/usr/bin/python3"
    pkgdir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmp = f"{dest}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(render(python, pkgdir))
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
