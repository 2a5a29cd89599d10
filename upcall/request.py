"""Parse a cifs.spnego key description into an immutable, typed Request. Pure: no I/O.

The kernel builds the description with sprintf (fs/smb/client/cifs_spnego.c):
    ver=0x2;host=H;ip4=A|ip6=A;sec=krb5|mskrb5|iakerb;uid=0xU;creduid=0xC[;user=N];pid=0xP
    [;upcall_target=mount|app]
Unlike cifs.upcall, a malformed number is an error (never 0), a repeated field is an error
(the kernel never repeats one), and every value has a length and character limit.
Unknown fields are ignored so that a newer kernel's additions do not break us.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

from .errors import BadDescription, UnsupportedVersion

SUPPORTED_VERSION = 2
MAX_DESCRIPTION = 4096  # the kernel's key description limit (KEY_MAX_DESC_SIZE) is 4095
MAX_HOST = 1024  # NI_MAXHOST - 1
MAX_USER = 256
MAX_ID = 0xFFFFFFFF

_HEX = re.compile(r"(?:0x)?([0-9a-fA-F]{1,8})")
# Host names go into an SPN ("cifs@host") and into DNS look-ups: dot-separated labels of
# letters, digits, hyphen and underscore (no empty label, none starting with '-', which a
# resolver or tool could take for an option), an optional root dot; or an IP literal (IPv6
# bracketed or not, '%' only before its zone). Never '@', '/', '%' elsewhere, whitespace.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_HOST_CHARS = re.compile(r"[A-Za-z0-9._\-:\[\]%]+")
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_USER = re.compile(r"[^\x00-\x1f\x7f;]+")
_IP6_NOCOLON = re.compile(r"[0-9a-fA-F]{32}")


class SecType(enum.Enum):
    KRB5 = "krb5"
    MSKRB5 = "mskrb5"
    IAKERB = "iakerb"


class UpcallTarget(enum.Enum):
    APP = "app"
    MOUNT = "mount"
    UNSPECIFIED = "unspecified"  # kernels before 6.13 send no upcall_target: treated as app

    @property
    def enters_caller_namespaces(self) -> bool:
        return self is not UpcallTarget.MOUNT


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Request:
    version: int
    host: str
    sec: SecType
    ip: IPAddress | None
    uid: int | None
    creduid: int | None
    user: str | None
    pid: int | None
    upcall_target: UpcallTarget

    def credential_uid(self, legacy_uid: bool = False) -> int:
        """The uid whose credentials are used: creduid, or uid with -l/--legacy-uid."""
        first, second = (self.uid, self.creduid) if legacy_uid else (self.creduid, self.uid)
        chosen = first if first is not None else second
        if chosen is None:
            raise BadDescription("neither creduid= nor uid= is present")
        return chosen


def _number(field: str, value: str, *, maximum: int = MAX_ID) -> int:
    m = _HEX.fullmatch(value)
    if not m:
        raise BadDescription(f"{field}={value!r} is not a hexadecimal number")
    n = int(m.group(1), 16)
    if n > maximum:
        raise BadDescription(f"{field}={value!r} is out of range")
    return n


def _host(value: str) -> str:
    if not value:
        raise BadDescription("host= is empty")
    if len(value) > MAX_HOST:
        raise BadDescription(f"host= is {len(value)} bytes, longer than {MAX_HOST}")
    if _HOST.fullmatch(value) or _ip_literal(value):
        return value
    if not _HOST_CHARS.fullmatch(value):
        raise BadDescription(f"host={value!r} has characters a host name cannot have")
    raise BadDescription(f"host={value!r} is neither a host name nor an IP address")


def _ip_literal(value: str) -> bool:
    inner = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    addr, pct, zone = inner.partition("%")
    if pct and (":" not in addr or not _ZONE.fullmatch(zone)):
        return False
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.version == 6 or inner == value


def _ip(field: str, value: str) -> IPAddress:
    try:
        if field == "ip4":
            return ipaddress.IPv4Address(value)
        if _IP6_NOCOLON.fullmatch(value):  # very old kernels printed %pi6 (no colons)
            value = ":".join(value[i : i + 4] for i in range(0, 32, 4))
        return ipaddress.IPv6Address(value)
    except ValueError as e:
        raise BadDescription(f"{field}={value!r} is not a valid address") from e


def _user(value: str) -> str:
    if not value or len(value) > MAX_USER or not _USER.fullmatch(value):
        raise BadDescription(f"user= must be 1 to {MAX_USER} printable characters")
    return value


def _enum(kind: type[enum.Enum], field: str, value: str) -> enum.Enum:
    try:
        return kind(value)
    except ValueError:
        allowed = "|".join(m.value for m in kind if m.value != "unspecified")
        raise BadDescription(f"{field}={value!r} is not one of {allowed}") from None


def parse_description(description: str) -> Request:
    """Parse the description part (after `type;uid;gid;perm;`) of a cifs.spnego key."""
    if len(description) > MAX_DESCRIPTION:
        raise BadDescription(f"description is {len(description)} bytes, over {MAX_DESCRIPTION}")
    fields: dict[str, str] = {}
    for token in description.split(";"):
        if not token:
            continue
        name, sep, value = token.partition("=")
        if not sep:
            raise BadDescription(f"field {token[:40]!r} has no '='")
        if name in fields:
            raise BadDescription(f"field {name}= appears twice")
        fields[name] = value

    for required in ("ver", "host", "sec"):
        if required not in fields:
            raise BadDescription(f"required field {required}= is missing")
    if "ip4" in fields and "ip6" in fields:
        raise BadDescription("both ip4= and ip6= are present")

    version = _number("ver", fields["ver"])
    if version > SUPPORTED_VERSION:
        raise UnsupportedVersion(f"upcall version {version} is above {SUPPORTED_VERSION}")
    if version < 1:
        raise BadDescription("ver=0 is not a kernel upcall version")

    ip: IPAddress | None = None
    for fam in ("ip4", "ip6"):
        if fam in fields:
            ip = _ip(fam, fields[fam])

    uid = _number("uid", fields["uid"]) if "uid" in fields else None
    creduid = _number("creduid", fields["creduid"]) if "creduid" in fields else None
    if uid is None and creduid is None:
        raise BadDescription("neither creduid= nor uid= is present")
    # pid is a kernel thread id: 0 is the idle task, never an upcall's caller.
    pid = _number("pid", fields["pid"], maximum=0x3FFFFFFF) if "pid" in fields else None
    if pid == 0:
        raise BadDescription("pid=0 is not a process")

    target = (
        _enum(UpcallTarget, "upcall_target", fields["upcall_target"])
        if "upcall_target" in fields
        else UpcallTarget.UNSPECIFIED
    )
    if target is UpcallTarget.UNSPECIFIED and "upcall_target" in fields:
        raise BadDescription("upcall_target=unspecified is not a kernel value")

    return Request(
        version=version,
        host=_host(fields["host"]),
        sec=SecType(_enum(SecType, "sec", fields["sec"]).value),
        ip=ip,
        uid=uid,
        creduid=creduid,
        user=_user(fields["user"]) if "user" in fields else None,
        pid=pid,
        upcall_target=UpcallTarget(target.value),
    )
