"""The privileged boundary a worker crosses to act for a caller. Runs in a forked worker only.

The order is the security argument (DESIGN.md, "The privileged boundary"); it lives here and
nowhere else, and the warm daemon's workers follow it too:

1. `preload()`   everything the worker can execute is loaded while the file system is still
                 the host's: modules, codecs, libgssapi/libkrb5, the host's GSS mechs and krb5
                 plugins. Then `guard()`: from here on an import fails loudly.
2. `enter()`     supplementary groups cleared in the init user namespace, then ONE setns on
                 the caller's pinned pidfd: every namespace at once, never /proc/PID by number.
3. `drop()`      the target ids and no capability in any set (effective, permitted,
                 inheritable, ambient, bounding), no_new_privs, securebits locked; for uid 0
                 and inside foreign user namespaces too (setresuid from kuid 0 into a user
                 namespace we do not own keeps that namespace's full set: only capset clears
                 it). Verified from capget(2) and a /proc/thread-self/status opened in step 1
                 (the caller's /proc could lie). No Python code that touches a file runs
                 between 2 and 3.
The bounding set and the securebits only matter at an execve, which a worker never makes, so
`preload()` already empties and locks them (`narrow()`: 41 prctl calls, ~0.4 ms of a fresh
worker here, off the request's path for a worker prepared ahead). Entering a user namespace
gives a full bounding set and default securebits again: then `drop()` narrows anew.
Only then may the worker chdir, read krb5.conf, open a ccache, use NSS or DNS.
"""

from __future__ import annotations

import codecs
import glob
import json
import os
import sys
import warnings

from .._ffi import ffi
from ..caller.identity import Target
from ..caller.namespaces import CLONE_NEWUSER
from ..errors import NamespaceError, PrivilegeDropError
from . import _caps, _setns

_SECUREBITS = (
    _caps.SECBIT_NOROOT
    | _caps.SECBIT_NOROOT_LOCKED
    | _caps.SECBIT_NO_SETUID_FIXUP
    | _caps.SECBIT_NO_SETUID_FIXUP_LOCKED
    | _caps.SECBIT_KEEP_CAPS_LOCKED
    | _caps.SECBIT_NO_CAP_AMBIENT_RAISE
    | _caps.SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED
)
# What a worker may still need after the switch: codecs Python looks up by name (getaddrinfo
# encodes a str host with idna, which pulls in stringprep and unicodedata).
_CODECS = ("utf-8", "ascii", "latin-1", "idna", "utf-16", "utf-32")
# The host's dynamically loaded krb5 modules (libkrb5 registers e.g. preauth/spake.so by path).
# dlopen of the same path later finds the loaded copy and never maps the caller's file.
_KRB5_PLUGIN_GLOBS = ("/usr/lib/*/krb5/plugins/preauth/*.so", "/usr/lib/*/krb5/plugins/tls/*.so")
_STATUS_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
_plugins: list[object] = []  # keep the handles: a dlclose would let the caller's copy load
_plugins_done: list[bool] = []


class BoundaryViolation(ImportError):
    """An import after the worker entered a caller: a bug, and never served from her files."""


class _NoImports:
    """First on sys.meta_path after preload: modules not yet loaded are never looked for."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        raise BoundaryViolation(f"import of {name!r} after entering the caller (boundary)")


def preload_host() -> None:
    """What the host provides that a worker runs, without a GSSAPI call: modules, codecs, the
    host's krb5 plugin modules. Idempotent. The warm daemon's parent calls it once (its workers
    inherit all of it by fork); a worker calls it again (nothing left to do then)."""
    if _plugins_done:
        return
    import gssapi
    import gssapi.raw  # noqa: F401

    from ..krb5 import gss, spn  # noqa: F401 - loaded for the worker's later steps

    for name in _CODECS:
        codecs.lookup(name)
    "é".encode("idna")  # also imports stringprep and unicodedata
    json.dumps({"x": [1, "é"]})
    _caps.capget()  # cffi builds its struct types and C wrappers on first use: once, here
    for pattern in _KRB5_PLUGIN_GLOBS:
        for path in sorted(glob.glob(pattern)):
            try:
                _plugins.append(ffi.dlopen(path, os.RTLD_NOW))
            except OSError:
                continue  # a broken host plugin is the host's problem, not a reason to fail
    _plugins_done.append(True)


def preload() -> None:
    """Worker, host namespaces, still root: load all it can run. Ends with the import guard."""
    import gssapi.raw

    preload_host()
    # The GSS mech glue reads /etc/gss/mech(.d) and loads mechs on first use: do it here, in
    # the worker (never in the daemon's parent: the interposer reads its environment then).
    gssapi.raw.indicate_mechs()
    narrow()
    guard()


def narrow() -> None:
    """Worker, root, before the target ids (and again after a user namespace was entered,
    which restores both): securebits locked, bounding set empty. Idempotent until enter()."""
    if _narrowed:
        return
    # CAP_SETPCAP (in whichever user namespace we are now) is needed for both
    _caps.prctl(_caps.PR_SET_SECUREBITS, _SECUREBITS)
    cap = 0
    while True:
        try:
            _caps.prctl(_caps.PR_CAPBSET_DROP, cap)
        except OSError:
            break  # EINVAL: past the kernel's last capability
        cap += 1
    _narrowed.append(True)


_narrowed: list[bool] = []


def guard() -> None:
    """Make every later import fail, and keep Python from reading source files for messages."""
    # Tracebacks and warnings read the source of the frame (linecache): in the caller's mount
    # namespace those are her files. The worker reports type and message only.
    warnings.simplefilter("ignore")
    sys.unraisablehook = lambda _u: None
    sys.excepthook = lambda *_a: None
    sys.meta_path.insert(0, _NoImports())
    sys.path_importer_cache.clear()
    sys.path[:] = []


def open_status() -> int:
    """An fd on this thread's status in the HOST's /proc, for verify() after the switch."""
    return os.open("/proc/thread-self/status", os.O_RDONLY | os.O_CLOEXEC)


def enter(pidfd: int, flags: int) -> None:
    """Worker, still root: groups off in the init user namespace (a foreign one may forbid
    setgroups, and kgid 0 must not travel into it), then the caller's namespaces in one call."""
    try:
        os.setgroups([])
    except OSError as e:
        raise PrivilegeDropError(f"cannot drop supplementary groups: {e.strerror}") from None
    if not flags:
        return
    if flags & CLONE_NEWUSER:
        _narrowed.clear()
    try:
        _setns.setns(pidfd, flags)
    except OSError as e:
        raise NamespaceError(f"setns on the caller's pidfd failed: {e.strerror}") from None


def drop(target: Target, status_fd: int) -> None:
    """Worker: become `target` with no capability left anywhere; verified, else refused."""
    try:
        narrow()  # done in preload() unless a user namespace was entered since (or no preload)
        _caps.prctl(_caps.PR_CAP_AMBIENT, _caps.PR_CAP_AMBIENT_CLEAR_ALL)
        os.setresgid(target.gid, target.gid, target.gid)
        os.setresuid(target.uid, target.uid, target.uid)
        _caps.capset_zero()
        _caps.prctl(_caps.PR_SET_NO_NEW_PRIVS, 1)
    except OSError as e:
        raise PrivilegeDropError(f"cannot become uid {target.uid}: {e.strerror}") from None
    verify(target, status_fd)


def verify(target: Target, status_fd: int) -> None:
    """Refuse to go on unless the kernel confirms: our ids, no groups, every set empty."""
    ids = (target.uid,) * 3, (target.gid,) * 3
    if (os.getresuid(), os.getresgid()) != ids or os.getgroups():
        raise PrivilegeDropError("ids did not change as asked")
    if any(_caps.capget()):
        raise PrivilegeDropError("capabilities left after capset (capget)")
    try:
        status = _status_text(status_fd)
    except OSError as e:
        raise PrivilegeDropError(f"cannot read own status: {e.strerror}") from None
    left = privileges_left(status)
    if left:
        raise PrivilegeDropError(f"privileges left: {left}")


def privileges_left(status: str) -> str:
    """Pure: what a /proc/PID/status text still grants (a set not empty, NoNewPrivs not 1),
    "" for nothing."""
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    left = [f"{k}={fields.get(k, '?').strip()}" for k in _STATUS_FIELDS if _nonzero(fields.get(k))]
    if left or fields.get("NoNewPrivs", "").strip() != "1":
        return f"{' '.join(left)} NoNewPrivs={fields.get('NoNewPrivs', '?').strip()}"
    return ""


def rehearse() -> None:
    """Worker prepared ahead of its request (root, host namespaces): verify()'s way through
    a status text once, on its own (still privileged) status, so that the first run's
    copy-on-write faults (~0.15 ms in a fresh worker here) are paid before the request."""
    fd = open_status()
    try:
        privileges_left(_status_text(fd))
    finally:
        os.close(fd)


def _status_text(fd: int) -> str:
    """An open_status() fd's text, read from its start (the fd is reused)."""
    return os.pread(fd, 16384, 0).decode("ascii", "replace")


def _nonzero(value: str | None) -> bool:
    try:
        return value is None or int(value.strip(), 16) != 0
    except ValueError:
        return True
