"""A drop-in for gssproxy.service with what the SMB service needs under a hardened unit
(upstream master: ProtectSystem=strict, PrivateNetwork=yes, IPAddressDeny=any,
RestrictAddressFamilies=AF_UNIX): its socket directories writable, the network to reach the
KDC, and KRB5_CONFIG with our krb5 snippet when /etc/krb5.conf does not include
/etc/krb5.conf.d/ (Debian 12's does not). Harmless under Debian's unhardened 0.9.1 unit.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from ..model import Config
from .gssproxy import CLIENTS_DIR
from .krb5 import KRB5_FILE
from .rendered import Kind, Rendered
from .tmpfiles import directories

DROPIN_FILE = PurePosixPath("/etc/systemd/system/gssproxy.service.d/cifs-upcall.conf")
MAIN_KRB5_CONF = PurePosixPath("/etc/krb5.conf")


def includes_snippet_dir(krb5_conf_text: str | None) -> bool:
    """Does this krb5.conf read /etc/krb5.conf.d/ (``includedir``)?"""
    for line in (krb5_conf_text or "").splitlines():
        words = line.split()
        if (
            len(words) == 2
            and words[0] == "includedir"
            and PurePosixPath(words[1].rstrip("/")) == KRB5_FILE.parent
        ):
            return True
    return False


def render(c: Config, krb5_includedir: bool, krb5_snippet: bool) -> list[Rendered]:
    dirs = [d for d, _ in directories(c)]
    if not dirs:
        return []  # no gssproxy service of ours
    lines = [
        "[Service]",
        "# the socket directories (made by tmpfiles.d) and the impersonator's ccaches",
        *(f"ReadWritePaths=-{d}" for d in dirs),
        f"ReadWritePaths=-{CLIENTS_DIR}",
        "# S4U needs the KDC",
        "PrivateNetwork=no",
        "IPAddressDeny=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    ]
    if krb5_snippet and not krb5_includedir:
        lines += [
            f"# {MAIN_KRB5_CONF} has no 'includedir {KRB5_FILE.parent}/': name the snippet",
            f"Environment=KRB5_CONFIG={MAIN_KRB5_CONF}:{KRB5_FILE}",
        ]
    return [Rendered(DROPIN_FILE, "\n".join(lines) + "\n", Kind.SYSTEMD)]
