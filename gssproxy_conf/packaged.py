"""Facts about the installed cifs-upcall package that the generator renders. One owner each:
the Debian package installs the helper here (debian/ is the other side of this fact)."""

from __future__ import annotations

from pathlib import PurePosixPath

HELPER_PATH = PurePosixPath("/usr/sbin/cifs-upcall")
