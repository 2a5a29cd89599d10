"""Facts about the installed cifs-upcall package that the generator renders. The helper owns
them (upcall/paths.py); this module only gives them the generator's types."""

from __future__ import annotations

from pathlib import PurePosixPath

from upcall import paths

HELPER_PATH = PurePosixPath(paths.HELPER_PATH)
