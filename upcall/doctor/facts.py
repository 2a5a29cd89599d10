"""What doctor gathered from the live system, as plain data (filled in by gather.py)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestKeyFacts:
    """request-key's own choice for a cifs.spnego description (`request-key -d -D`)."""

    program: str | None  # the path it would run; None: no line matched
    argv: tuple[str, ...] = ()  # argv[1:] as request-key would pass it (%k -> "1")
    where: str = ""  # "file:line" of the chosen line
    error: str = ""  # request-key's complaint, or why it could not be run
    program_exists: bool = True


@dataclass(frozen=True)
class PolicyFacts:
    path: str
    explicit: bool  # named by --policy in the request-key line
    exists: bool
    error: str = ""  # BadPolicy message (trust or schema)
    sockets: tuple[tuple[str, str], ...] = ()  # (socket, "impersonate" | "own-keytab")
    rules: int = 0


@dataclass(frozen=True)
class SocketFacts:
    socket: str
    kind: str  # impersonate | own-keytab
    dir_exists: bool
    dir_uid: int = 0
    dir_mode: int = 0o700
    dir_is_dir: bool = True
    connect_error: str = ""  # strerror of connect(2) to the socket; "" if it connected
    probe_reason: str = ""  # Reason value of the GSS probe through gssproxy; "" = worked
    probe_message: str = ""


@dataclass(frozen=True)
class ServiceFacts:
    """The gssproxy [service/...] section that owns a socket."""

    socket: str
    conf_dir: str
    section: str = ""  # "" if none has this socket
    where: str = ""
    keytab: str = ""  # cred_store keytab: (impersonate) or client_keytab: (own keytab)
    principal: str = ""  # krb5_principal
    euid: str = ""


@dataclass(frozen=True)
class KeytabFacts:
    path: str
    expected: str  # the principal that must come first (krb5_principal), or ""
    first: str | None = None
    error: str = ""


@dataclass(frozen=True)
class Krb5Facts:
    files: tuple[str, ...]
    default_realm: str | None
    forwardable: str | None  # [libdefaults] forwardable as written, or None
    includedirs: tuple[str, ...] = ()
    snippet_dir: str = "/etc/krb5.conf.d"
    snippets: tuple[str, ...] = ()  # files in snippet_dir that MIT would read
    kdcs: tuple[str, ...] = ()  # [realms] <default_realm> kdc = ...
    dns_lookup_kdc: str | None = None


@dataclass(frozen=True)
class KdcFacts:
    address: str  # host:port tried
    answered: bool
    transport: str = ""
    rtt_ms: float = 0.0
    kdc_time: float | None = None  # from the KRB-ERROR
    local_time: float | None = None  # midpoint of the exchange, this machine's clock
    error_code: int | None = None
    error: str = ""

    @property
    def skew(self) -> float | None:
        """The KDC's clock minus ours, in seconds."""
        if self.kdc_time is None or self.local_time is None:
            return None
        return self.kdc_time - self.local_time


@dataclass(frozen=True)
class SpnFacts:
    server: str
    principal: str  # whose credentials were used ("" if none)
    keytab: str = ""
    ok: bool = False
    spn: str = ""
    reason: str = ""
    message: str = ""
    hint: str = ""


@dataclass(frozen=True)
class DryRunFacts:
    user: str
    server: str
    uid: int | None
    ok: bool = False
    reason: str = ""
    message: str = ""
    hint: str = ""
    source: str = ""
    principal: str = ""
    spn: str = ""
    impersonated: bool = False
    trail: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class RouteFacts:
    """How the caller's network namespace reaches the server (gather.caller_route)."""

    pid: int
    server: str
    address: str | None  # the server's address, resolved in the host namespaces
    error: str = ""  # why nothing could be looked up (no such process, no address, ...)
    routed: bool = False
    device: str = ""
    source: str = ""
    gateway: str = ""
    same_netns: bool = False  # the caller shares the host's network namespace
