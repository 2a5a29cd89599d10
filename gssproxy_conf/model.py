"""The validated model: typed, frozen, and free of I/O. ``schema`` builds it from YAML;
renderers only read it. Defaults live here so that the schema, the renderers and the
serializer agree on them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from upcall import paths
from upcall.policy.rules import Mode as Mode  # the helper's policy vocabulary: one owner
from upcall.policy.rules import ProxyKind as ProxyKind

from .packaged import HELPER_PATH

DEFAULT_HELPER = HELPER_PATH
DEFAULT_POLICY = PurePosixPath(paths.POLICY_FILE)
DEFAULT_SMB_SOCKET = PurePosixPath("/run/gssproxy/cifs/cifs.sock")
# AD's "Protected Users" as host NSS spells it: as created (winbind) and lower-cased (sssd)
PROTECTED_USERS_GROUPS = ("Protected Users", "protected users")
DEFAULT_RBCD_GROUP = "cifs-upcall-clients"


class Delegation(enum.Enum):
    """How the KDC is told that the client may impersonate users to the file servers."""

    PROTOCOL_TRANSITION = "protocol-transition"  # classic KCD: msDS-AllowedToDelegateTo + T2A4D
    RBCD = "rbcd"  # msDS-AllowedToActOnBehalfOfOtherIdentity on each file server


class KdcFlavor(enum.Enum):
    """Samba's KDC wants a forwardable S4U2Self ticket even for RBCD; Windows does not."""

    SAMBA = "samba"
    WINDOWS = "windows"


@dataclass(frozen=True)
class Client:
    principal: str  # as written: "FS-CLIENT1$" or "FS-CLIENT1$@EXAMPLE.COM"
    keytab: PurePosixPath
    sid: str | None = None  # needed for the RBCD LDIF (binary security descriptor)

    @property
    def account(self) -> str:
        """sAMAccountName: the principal without its realm."""
        return self.principal.split("@", 1)[0]


@dataclass(frozen=True)
class Smb:
    servers: tuple[str, ...]
    impersonate: bool = True
    socket: PurePosixPath = DEFAULT_SMB_SOCKET
    policy: Mode = Mode.LOCAL_FIRST
    min_uid: int = 1000
    deadline: int = 10  # seconds the helper may spend per upcall


@dataclass(frozen=True)
class Nfs:
    impersonate: bool = False
    # None = gssproxy's default socket, the one rpc.gssd connects to
    socket: PurePosixPath | None = None
    servers: tuple[str, ...] = ()  # only for AD delegation (nfs/<host>) when impersonating
    # NFS is opt-in: without ``enable: true`` the schema leaves ``Config.nfs`` None
    enable: bool = True


@dataclass(frozen=True)
class ProtectedUser:
    name: str
    uid: int
    keytab: PurePosixPath
    principal: str | None = None  # default: name@realm
    socket: PurePosixPath | None = None  # default: protected-<name>.sock next to the SMB socket


@dataclass(frozen=True)
class LocalUser:
    name: str
    uid: int
    principal: str


@dataclass(frozen=True)
class Automount:
    map: PurePosixPath
    mountpoint: PurePosixPath
    shares: tuple[tuple[str, str], ...]  # (key, //host/share), file order
    options: tuple[str, ...] = ("sec=krb5",)


@dataclass(frozen=True)
class Helper:
    path: PurePosixPath = DEFAULT_HELPER
    policy: PurePosixPath = DEFAULT_POLICY
    krb5_conf: PurePosixPath | None = None  # passed as ``-k``
    args: tuple[str, ...] = ()  # extra arguments, appended after ours


@dataclass(frozen=True)
class Ad:
    base_dn: str | None = None  # default: DC=<each realm label>
    computers: str = "CN=Computers"  # container of computer accounts, relative to base_dn
    users: str = "CN=Users"
    kdc: KdcFlavor = KdcFlavor.SAMBA
    # host -> sAMAccountName of the file server's computer object (default: FS1$ for fs1.x.y)
    server_accounts: tuple[tuple[str, str], ...] = ()
    # RBCD through this group: the descriptor names it, each client is a member
    rbcd_group: str | None = None
    # sAMAccountName -> DN, for objects outside the default containers (e.g. a DC's account
    # in OU=Domain Controllers)
    dns: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Config:
    realm: str
    client: Client
    smb: Smb
    delegation: Delegation = Delegation.PROTOCOL_TRANSITION
    nfs: Nfs | None = None
    protected_users: tuple[ProtectedUser, ...] = ()
    local_users: tuple[LocalUser, ...] = ()
    automount: Automount | None = None
    helper: Helper = field(default_factory=Helper)
    ad: Ad = field(default_factory=Ad)
    # krb5 auth_to_local_names for local_users: changes who may log in as whom over GSSAPI
    auth_to_local_names: bool = False
    deny_groups: tuple[str, ...] = ()  # never impersonated (helper policy)

    @property
    def client_principal(self) -> str:
        """The client principal with its realm."""
        p = self.client.principal
        return p if "@" in p else f"{p}@{self.realm}"

    def protected_principal(self, user: ProtectedUser) -> str:
        return user.principal or f"{user.name}@{self.realm}"

    def protected_socket(self, user: ProtectedUser) -> PurePosixPath:
        return user.socket or self.smb.socket.parent / f"protected-{user.name}.sock"

    @property
    def base_dn(self) -> str:
        return self.ad.base_dn or ",".join(f"DC={p.lower()}" for p in self.realm.split("."))

    def server_account(self, host: str) -> str:
        mapped = dict(self.ad.server_accounts).get(host)
        return mapped or host.split(".", 1)[0].upper() + "$"

    def dn_of(self, account: str, container: str) -> str:
        mapped = dict(self.ad.dns).get(account)
        return mapped or f"CN={account.removesuffix('$')},{container},{self.base_dn}"
