"""Pure value checks shared by ``schema`` (input) and ``check`` (lint). Each returns an
error message, or None when the value is fine."""

from __future__ import annotations

import re

from upcall.policy.parse import SUN_PATH_MAX

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")
_REALM_RE = re.compile(r"^[A-Z0-9](?:[A-Z0-9-]*[A-Z0-9])?(?:\.[A-Z0-9](?:[A-Z0-9-]*[A-Z0-9])?)*$")
_LOGIN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")
_SID_RE = re.compile(r"^S-1-\d{1,15}(?:-\d{1,10}){1,15}$")
_DN_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*=[^,=]+(?:,[A-Za-z][A-Za-z0-9-]*=[^,=]+)*$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_SHARE_RE = re.compile(r"^//([^/]+)/([^/\s]+)(/[^\s]*)?$")

# sun_path is 108 bytes with the NUL; gssproxy silently truncates longer paths (strncpy):
# SUN_PATH_MAX is the helper's limit (upcall/policy/parse.py), one owner


def hostname(value: str) -> str | None:
    if value != value.lower():
        return f"host name {value!r} must be lower case"
    if len(value) > 253 or not _HOST_RE.match(value):
        return f"{value!r} is not a fully qualified host name (like fs1.example.com)"
    if value.rsplit(".", 1)[-1].isdigit():
        return f"{value!r} is an address; Kerberos needs the server's host name"
    return None


def realm(value: str) -> str | None:
    if not _REALM_RE.match(value):
        return f"{value!r} is not a Kerberos realm (upper case, like EXAMPLE.COM)"
    return None


def principal(value: str) -> str | None:
    """A principal name, with or without ``@REALM``; instance separators are allowed."""
    if not value or any(c.isspace() for c in value) or value.count("@") > 1:
        return f"{value!r} is not a Kerberos principal (like name@EXAMPLE.COM)"
    name, _, rlm = value.partition("@")
    if not name or (("@" in value) and realm(rlm)):
        return f"{value!r} is not a Kerberos principal (like name@EXAMPLE.COM)"
    return None


def login(value: str) -> str | None:
    if not _LOGIN_RE.match(value):
        return f"{value!r} is not a local account name"
    return None


def absolute_path(value: str) -> str | None:
    if not value.startswith("/"):
        return f"{value!r} is a relative path; give an absolute one (starting with /)"
    if any(c in value for c in "\0\n\r") or any(c.isspace() for c in value):
        return f"{value!r} contains white space or control characters"
    if "/../" in value + "/" or value.endswith("/.."):
        return f"{value!r} contains '..'"
    return None


def socket_path(value: str) -> str | None:
    err = absolute_path(value)
    if err:
        return err
    if len(value.encode()) > SUN_PATH_MAX:
        return (
            f"socket path is {len(value.encode())} bytes; gssproxy silently truncates "
            f"paths longer than {SUN_PATH_MAX}"
        )
    return socket_dir(value)


# Directories a tmpfiles.d "d" line must never re-own or chmod
_SHARED_DIRS = frozenset(
    {
        "/",
        "/run",
        "/var/run",
        "/tmp",
        "/var/tmp",
        "/var",
        "/var/lib",
        "/var/lib/gssproxy",
        "/var/lib/gssproxy/clients",
        "/etc",
        "/etc/gssproxy",
        "/root",
        "/home",
        "/dev",
        "/dev/shm",
        "/usr",
        "/opt",
        "/srv",
        "/run/user",
    }
)


def socket_dir(value: str) -> str | None:
    """The socket's directory becomes ours (created and chmod-ed at boot): no shared ones."""
    parent = value.rsplit("/", 1)[0] or "/"
    if parent in _SHARED_DIRS:
        return (
            f"put the socket in a dedicated directory (like /run/gssproxy/cifs/), not in "
            f"{parent}: its mode is set at boot"
        )
    return None


def sid(value: str) -> str | None:
    if not _SID_RE.match(value):
        return f"{value!r} is not a SID (like S-1-5-21-1-2-3-1105)"
    return None


def dn(value: str) -> str | None:
    if not _DN_RE.match(value):
        return f"{value!r} is not a distinguished name (like DC=example,DC=com)"
    return None


def map_key(value: str) -> str | None:
    if not _KEY_RE.match(value):
        return f"{value!r} is not a usable autofs key"
    return None


def unc(value: str) -> tuple[str, str] | str:
    """``//host/share[/sub]`` -> (host, share), or an error message."""
    m = _SHARE_RE.match(value)
    if not m:
        return f"{value!r} is not a share (like //fs1.example.com/projects)"
    err = hostname(m.group(1))
    return err if err else (m.group(1), m.group(2))


def request_key_word(value: str) -> str | None:
    # request-key splits its lines on white space and has no quoting
    if not value or any(c.isspace() for c in value) or value.startswith("#"):
        return f"{value!r} cannot be used in a request-key line (no spaces, no leading #)"
    return None


def group_name(value: str) -> str | None:
    # AD group names may hold spaces ("Protected Users"); not characters AD refuses in a
    # sAMAccountName, nor quotes (the PowerShell and shell renderings quote names)
    if not value or value != value.strip() or any(c in value for c in "\0\n\r,\"'/\\[]:;|=+*?<>"):
        return f"{value!r} is not a usable group name"
    return None
