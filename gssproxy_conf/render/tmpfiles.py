"""tmpfiles.d rule for the socket directories: gssproxy creates sockets, not directories,
and /run is empty at boot. The SMB/protected directory is root-only (0700): that directory
is the access control for the root-only services. An NFS socket directory must stay
traversable because rpc.gssd connects as the user."""

from __future__ import annotations

from pathlib import PurePosixPath

from ..model import Config
from .rendered import Kind, Rendered

TMPFILES_FILE = PurePosixPath("/etc/tmpfiles.d/cifs-upcall-gssproxy.conf")


def directories(c: Config) -> list[tuple[PurePosixPath, int]]:
    dirs: dict[PurePosixPath, int] = {}
    if c.smb.impersonate:
        dirs[c.smb.socket.parent] = 0o700
    for u in c.protected_users:
        dirs[c.protected_socket(u).parent] = 0o700
    if c.nfs and c.nfs.socket:
        dirs.setdefault(c.nfs.socket.parent, 0o755)
    return list(dirs.items())


def render(c: Config) -> list[Rendered]:
    dirs = directories(c)
    if not dirs:
        return []
    body = "".join(f"d {d} {mode:04o} root root -\n" for d, mode in dirs)
    return [Rendered(TMPFILES_FILE, body, Kind.TMPFILES)]
