"""autofs: an indirect map of multiuser CIFS mounts plus its auto.master.d entry.

``multiuser`` gives each user their own SMB session (and so their own cifs.spnego upcall);
``cruid=${UID}`` makes the first (mounting) session belong to the user who triggered it, not
root. autofs expands ``${UID}`` itself.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from ..model import Config
from .rendered import Kind, Rendered

AUTO_MASTER_FILE = PurePosixPath("/etc/auto.master.d/cifs-upcall.autofs")
FIXED_OPTIONS = ("fstype=cifs", "multiuser", "cruid=${UID}")


def entry(key: str, share: str, options: tuple[str, ...]) -> str:
    opts = ",".join((*FIXED_OPTIONS, *options))
    return f"{key} -{opts} :{share}"


def render(c: Config) -> list[Rendered]:
    a = c.automount
    if a is None:
        return []
    body = "".join(entry(k, s, a.options) + "\n" for k, s in a.shares)
    return [
        Rendered(a.map, body, Kind.AUTOFS_MAP),
        Rendered(AUTO_MASTER_FILE, f"{a.mountpoint} {a.map}\n", Kind.AUTOFS_MASTER),
    ]
