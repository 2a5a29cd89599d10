"""gssproxy service snippets: SMB impersonation, NFS client, protected users.

Rules baked in (see docs/impersonation.md): one unique ``[service/...]`` per file and no
``[gssproxy]`` section (snippets cannot set globals, repeated names are dropped), ``mechs``
exactly ``krb5``, a dedicated socket instead of ``program=`` (a Python client is seen as its
interpreter), whole-line comments only, and no impersonation on a service that callers use
without naming a user unless ``krb5_principal`` names one for them.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from ..lint.gssproxy_ini import format_section
from ..model import Config, ProtectedUser
from .rendered import Kind, Rendered

GSSPROXY_DIR = PurePosixPath("/etc/gssproxy")
CLIENTS_DIR = PurePosixPath("/var/lib/gssproxy/clients")

SMB_SERVICE = "cifs-upcall-smb"
# prefixed: a distribution's [service/nfs-client] (RHEL 9's 99-nfs-client.conf) must not be
# shadowed by ours, nor ours by theirs (the first file with a section name wins)
NFS_SERVICE = "cifs-upcall-nfs-client"
PROTECTED_PREFIX = "cifs-upcall-protected-"

SMB_FILE = GSSPROXY_DIR / "50-cifs-upcall-smb.conf"
NFS_FILE = GSSPROXY_DIR / "50-cifs-upcall-nfs.conf"
LEGACY_NFS_FILE = GSSPROXY_DIR / "50-nfs-client.conf"  # our name before; removed if marked
PROTECTED_FILE = GSSPROXY_DIR / "51-cifs-upcall-protected.conf"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def smb_service(c: Config) -> list[tuple[str, str]]:
    return [
        ("mechs", "krb5"),
        ("euid", "0"),
        ("socket", str(c.smb.socket)),
        ("cred_store", f"keytab:{c.client.keytab}"),
        # No ccache of the service's own, and sync on: gssproxy then hands the helper the
        # credential with the S4U2Proxy ticket in it (encrypted with the keytab's key), which
        # the helper's daemon keeps, so a repeat upcall for the user makes no KDC request.
        ("allow_client_ccache_sync", "yes"),
        ("cred_usage", "initiate"),
        ("impersonate", "yes"),
        # ignored by gssproxy 0.9.x for the impersonator, used by later releases to pin it
        ("krb5_principal", c.client_principal),
    ]


def nfs_service(c: Config) -> list[tuple[str, str]]:
    assert c.nfs is not None
    opts = [("mechs", "krb5"), ("euid", "0")]
    if c.nfs.socket:
        opts.append(("socket", str(c.nfs.socket)))
    opts += [
        ("cred_store", f"keytab:{c.client.keytab}"),
        ("cred_store", f"ccache:FILE:{CLIENTS_DIR}/{NFS_SERVICE}_krb5cc_%U"),
        ("cred_store", f"client_keytab:{CLIENTS_DIR}/%U.keytab"),
        ("cred_usage", "initiate"),
        ("allow_any_uid", "yes"),
        ("trusted", "yes"),
        ("impersonate", _yes(c.nfs.impersonate)),
    ]
    if c.nfs.impersonate:
        # root's rpc.gssd asks without a name; with impersonate that is BAD_NAME unless
        # krb5_principal supplies the machine principal (which then needs no S4U)
        opts.append(("krb5_principal", c.client_principal))
    opts.append(("min_lifetime", "60"))
    return opts


def protected_service(c: Config, u: ProtectedUser) -> list[tuple[str, str]]:
    return [
        ("mechs", "krb5"),
        ("euid", "0"),
        ("socket", str(c.protected_socket(u))),
        ("cred_store", f"client_keytab:{u.keytab}"),
        # one user per service: a fixed ccache, %U would be root's uid here
        ("cred_store", f"ccache:FILE:{CLIENTS_DIR}/{PROTECTED_PREFIX}{u.name}_krb5cc"),
        ("cred_usage", "initiate"),
        ("krb5_principal", c.protected_principal(u)),
    ]


def render(c: Config) -> list[Rendered]:
    out: list[Rendered] = []
    if c.smb.impersonate:
        body = format_section(
            f"service/{SMB_SERVICE}",
            smb_service(c),
            "SMB (cifs-upcall): the helper connects as root and names the user; gssproxy does\n"
            "S4U2Self + S4U2Proxy with the client keytab. Keep program= and allow_any_uid out.",
        )
        out.append(Rendered(SMB_FILE, body, Kind.GSSPROXY))
    if c.nfs is not None:
        where = f"socket {c.nfs.socket}" if c.nfs.socket else "gssproxy's default socket"
        body = format_section(
            f"service/{NFS_SERVICE}",
            nfs_service(c),
            f"NFS (rpc.gssd, GSS_USE_PROXY=yes) on {where}, apart from SMB.",
        )
        out.append(Rendered(NFS_FILE, body, Kind.GSSPROXY))
    if c.protected_users:
        parts = [
            format_section(
                f"service/{PROTECTED_PREFIX}{u.name}",
                protected_service(c, u),
                f"{u.name} (uid {u.uid}) is never impersonated: its own keytab, its own socket.",
            )
            for u in c.protected_users
        ]
        out.append(Rendered(PROTECTED_FILE, "\n".join(parts), Kind.GSSPROXY))
    return out
