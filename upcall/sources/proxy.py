"""The gssproxy source, run in a forked child that stays root in the host namespaces.

Identity model (C) of docs/impersonation.md: the child connects as root to a dedicated socket in a
root-only directory, served by `euid = 0`, `impersonate = yes`, `cred_usage = initiate`, and
names the user as a Kerberos principal; gssproxy does S4U2Self at acquire and S4U2Proxy at
init, with the client keytab it holds. The policy (policy.py) already decided that this user
may be impersonated for this server; nothing here widens that.

An own-keytab socket (ProxyKind.OWN_KEYTAB, e.g. a protected user's service) is driven the same
way, but its service has no `impersonate`: gssproxy gets the user's TGT with the user's own key
from its `client_keytab` (AS exchange) and a service ticket with it. The token is reported as
source `proxy-keytab`, not impersonated, and KDC refusals are not S4U refusals there.

The interposer reads GSS_USE_PROXY and GSSPROXY_BEHAVIOR once, at libgssapi's first call, so
they are set before gssapi is imported. KRB5CCNAME=MEMORY: keeps the interposer from writing its
X-GSSPROXY entry into any file ccache (it would wipe a FILE cache: krb5_cc_initialize).

Cached impersonation (proxy_cache.py): gss_export_cred of a gssproxy credential is refused by
the interposer (remote credentials cannot be exported), so the blob is what gss_store_cred_into
writes: a FILE ccache holding only the X-GSSPROXY entry, gssproxy's gssx_cred, whose tickets
and keys are encrypted with a key of the service's keytab. A worker given one makes it its
default ccache (KRB5CCNAME=FILE: in a root-only scratch directory under /run, removed once its
result is out, after the new blob's export: child.then) and acquires: gssproxy checks only
name and lifetime (no S4U2Self), and with `allow_client_ccache_sync` the blob also holds the
S4U2Proxy ticket. Not a cred_store: one without an X-GSSPROXY entry would make the interposer
try local krb5 first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..errors import CredentialError, Reason, UpcallError
from ..kernel.request import IPAddress
from ..krb5.classify import ProxyPhase, classify_proxy
from ..krb5.spn import SpnCandidate, SystemResolver, candidates
from ..policy.rules import ProxyKind
from ..worker import child
from .base import REHEARSAL_HOST, Attempt, SourceKind, SourceToken, rehearsal_result
from .proxy_cache import CRED_MAX, gssproxy_blob_principal
from .spn_attempts import first_token

PROXY_CCACHE = "MEMORY:cifs-upcall-proxy"


@dataclass(frozen=True)
class ProxyPlan:
    host: str
    ip: IPAddress | None
    trust_dns: bool
    principal: str
    socket: str
    kind: ProxyKind = ProxyKind.IMPERSONATE
    krb5_config: str | None = None  # the host's krb5.conf (--host-krb5-config)
    cached: bytes | None = None  # opaque blob from an earlier worker (proxy_cache.py)
    export_cred: bool = False  # hand the credential back as "cred"/"cred_expires"

    @property
    def impersonates(self) -> bool:
        return self.kind is ProxyKind.IMPERSONATE

    @property
    def source(self) -> SourceKind:
        return SourceKind.PROXY if self.impersonates else SourceKind.PROXY_KEYTAB

    @property
    def label(self) -> str:
        """The child's name in deadline and crash messages."""
        return "gssproxy (impersonation)" if self.impersonates else "gssproxy (own keytab)"

    def how(self, phase: ProxyPhase) -> str:
        """What gssproxy did with the KDC in `phase`, for the trail."""
        if phase is ProxyPhase.ACQUIRE:
            return "S4U2Self" if self.impersonates else "own keytab, no S4U"
        return "S4U2Proxy" if self.impersonates else "own TGT"


def check_socket_dir(socket: str) -> None:
    """Only root may create the socket: otherwise anyone could serve us forged credentials."""
    d = os.path.dirname(socket)
    try:
        st = os.stat(d)
    except OSError as e:
        raise CredentialError(
            f"gssproxy socket directory {d}: {e.strerror}",
            reason=Reason.PROXY_UNAVAILABLE,
            hint="is gssproxy running with the cifs-upcall service (tmpfiles.d makes the dir)?",
        ) from None
    if st.st_uid != 0 or st.st_mode & 0o022 or not stat.S_ISDIR(st.st_mode):
        raise CredentialError(
            f"gssproxy socket directory {d} is not root-only (uid {st.st_uid}, mode "
            f"{st.st_mode & 0o7777:o})",
            reason=Reason.PROXY_UNAVAILABLE,
            hint=f"make {d} root:root 0700: a user who can create the socket can forge tickets",
        )


def _interpose(socket: str, krb5_config: str | None, ccache: str = PROXY_CCACHE) -> None:
    """The worker's whole environment: nothing inherited from whoever started the helper."""
    os.environ.clear()
    os.environ.update(
        PATH="/usr/bin:/bin",
        GSS_USE_PROXY="yes",
        GSSPROXY_BEHAVIOR="REMOTE_ONLY",  # never fall back to local krb5 with root's creds
        GSSPROXY_SOCKET=socket,
        KRB5CCNAME=ccache,
    )
    if krb5_config:
        os.environ["KRB5_CONFIG"] = krb5_config  # the host's, as gssproxy's


def _drop() -> None:
    """Stay uid 0 (gssproxy serves root's service to uid 0 peers; the socket directory is
    root's own) but hold no capability: nothing here needs one, and the KDC's and gssproxy's
    replies are parsed by libkrb5 in this process."""
    from ..caller.identity import Target
    from ..worker import boundary

    status = boundary.open_status()
    try:
        boundary.enter(-1, 0)  # supplementary groups only: no caller is entered
        boundary.drop(Target(0, 0), status)
    finally:
        os.close(status)


def prepare(socket: str | None = None, *, rehearse: bool = False) -> None:
    """Worker, host namespaces, before any plan: no capability left (uid 0 stays), then the
    mech glue and the interposer loaded with GSS_USE_PROXY=yes (read then; the socket, read
    at connect time, and krb5.conf come with the plan). A prepared worker (child.Ready) runs
    this before its request arrives. Given the `socket` its request will most likely name
    (the policy's only one) it also asks that gssproxy for its mechanisms, which the
    interposer otherwise asks once per process after its first context: one round trip
    less on the request's path. Without, inquire_saslname_for_mech loads the mech glue
    without a word to gssproxy. With `rehearse` (a worker forked ahead of its request), the
    result's way too (child.rehearse)."""
    if _prepared:
        return
    _drop()
    import gssapi

    if socket:
        try:
            check_socket_dir(socket)
        except UpcallError:
            socket = None  # only a guess: the request's own socket is checked as always
    if socket:
        _interpose(socket, None)
        try:
            gssapi.raw.indicate_mechs()
        except gssapi.exceptions.GSSError:
            # gssproxy did not answer: whether the interposer would ask again is its own
            # business; this worker ends, and its handler forks a fresh one if it needs one
            os._exit(0)
    else:
        _interpose("", None)
        gssapi.raw.inquire_saslname_for_mech(gssapi.MechType.kerberos)
    if rehearse:
        child.rehearse(run, _REHEARSAL, _rehearsal_result)
    _prepared.append(True)


# what a prepared worker rehearses with (child.rehearse): nobody's, never sent anywhere
_REHEARSAL = ProxyPlan(REHEARSAL_HOST, None, False, "rehearsal@INVALID", "/nonexistent")


def _rehearsal_result() -> dict[str, object]:
    gssproxy_blob_principal(b"\x05\x04" + bytes(64))
    return rehearsal_result(_REHEARSAL.source)


_prepared: list[bool] = []
_keep: list[object] = []  # gssproxy's credentials, never released: see run()


def _failure(e: Any, plan: ProxyPlan, phase: ProxyPhase, spn: str, what: str) -> UpcallError:
    """A gssapi error through the interposer, classified once with gssproxy's table."""
    c = classify_proxy(
        e.min_code or 0, phase=phase, who=plan.principal, spn=spn, impersonation=plan.impersonates
    )
    return CredentialError(f"{what}: {e.gen_message()}", hint=c.hint, reason=c.reason)


SCRATCH_PREFIX = "cifs-upcall-proxy-"


def _scratch_root() -> str:
    return "/run" if os.path.isdir("/run") else tempfile.gettempdir()


def _scratch() -> str:
    """A root-only directory for the blob's FILE ccaches (tmpfs /run where there is one),
    named for this worker's pid and 48 random bits (what mkdtemp gives, without seeding its
    name generator in each forked worker: 0.25 ms of the request's path); mkdir never
    follows or reuses what is there. _remove() takes it away after the result is out,
    sweep() if the worker was killed first."""
    root = _scratch_root()
    for _ in range(100):
        path = os.path.join(root, f"{SCRATCH_PREFIX}{os.getpid()}-{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free scratch directory name in {root}")


SCRATCH_FILES = ("cc", "out")  # _stage's and _export's ccaches: all a worker writes there


def _remove(d: str) -> None:
    """Worker: its scratch directory, gone: the two names it may hold, else (something else
    appeared there) the whole tree."""
    for name in SCRATCH_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(d, name))
    try:
        os.rmdir(d)
    except OSError:
        shutil.rmtree(d, ignore_errors=True)


def sweep(pid: int) -> None:
    """Handler, after it killed worker `pid` (a deadline, a hung gssproxy): remove the scratch
    directory that worker could not (registered with child.on_kill)."""
    root = _scratch_root()
    for name in os.listdir(root):
        if name.startswith(f"{SCRATCH_PREFIX}{pid}-"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


child.on_kill(sweep)


def _acquire(plan: ProxyPlan, store: str | None) -> Any:
    import gssapi

    from ..krb5 import gss

    extra: dict[str, Any] = {"store": {b"ccache": store.encode()}} if store else {}
    return gssapi.Credentials(
        name=gssapi.Name(plan.principal, gssapi.NameType.kerberos_principal),
        usage="initiate",
        mechs=[gss.KRB5],
        **extra,
    )


def _token(plan: ProxyPlan, creds: Any, trail: list[Attempt]) -> SourceToken:
    """The SPN loop (candidates looked up lazily) with gssproxy's failures classified."""
    spns = candidates(plan.host, plan.ip, trust_dns=plan.trust_dns, resolver=SystemResolver())

    def translate(e: Any, spn: SpnCandidate) -> tuple[str, UpcallError]:
        # gssproxy's minor codes carry an offset and mean S4U refusals here: its own table
        f = _failure(e, plan, ProxyPhase.INIT, spn.principal, spn.principal)
        return f.message, f

    return first_token(
        spns, creds, plan.principal, trail, plan.source, translate,
        impersonated=plan.impersonates,
    )  # fmt: skip


def _stage(plan: ProxyPlan, d: str) -> tuple[str | None, str]:
    """Worker: write the earlier worker's blob as this worker's default ccache, so that the
    interposer finds its X-GSSPROXY entry without a cred_store (a cred_store ccache without
    one would make it try local krb5 first). (path or None, why not)."""
    blob = plan.cached
    if not blob:
        return None, ""
    if gssproxy_blob_principal(blob) != plan.principal:
        return None, f"not a gssproxy credential of {plan.principal}"
    path = os.path.join(d, SCRATCH_FILES[0])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    return path, ""


def _from_cache(plan: ProxyPlan, staged: str) -> tuple[Any, SourceToken, bool]:
    """Acquire from the staged blob and make the token; any failure raises and the caller
    takes the full path, which reports it. gssproxy checks the blob's name and lifetime and
    returns it as is (no S4U2Self); if it cannot use it (undecryptable, expired) it silently
    acquires afresh and the interposer rewrites the staged ccache: the bool says it took it."""
    creds = _acquire(plan, None)
    with open(staged, "rb") as f:
        taken = f.read(CRED_MAX + 1) == plan.cached
    return creds, _token(plan, creds, []), taken


def _unchanged(staged: str, blob: bytes | None) -> bool:
    """Worker: the staged ccache still holds exactly the blob it was given (after the token:
    the interposer rewrites it when gssproxy hands back an updated credential)."""
    try:
        with open(staged, "rb") as f:
            return f.read(CRED_MAX + 1) == blob
    except OSError:
        return False


def _export(creds: Any, d: str) -> tuple[str, int] | None:
    """The credential as the blob a later worker can use: (hex, end in unix seconds)."""
    try:
        lifetime = creds.lifetime
        path = os.path.join(d, SCRATCH_FILES[1])
        creds.store(store={b"ccache": f"FILE:{path}".encode()}, usage="initiate", overwrite=True)
        with open(path, "rb") as f:
            blob = f.read(CRED_MAX + 1)
    except Exception:
        return None  # a token without a cache entry is still a token
    if not blob or len(blob) > CRED_MAX or not isinstance(lifetime, int) or lifetime <= 0:
        return None
    return blob.hex(), int(time.time()) + lifetime


def run(plan: ProxyPlan) -> dict[str, object]:
    """The child's body: SourceToken JSON plus the trail, or UpcallError carrying the trail.
    Given ahead of its turn (a gated child.Ready) it gets as far as the first call to gssproxy
    and waits there. The credential's export for the daemon's cache (plan.export_cred) and
    the scratch directory's removal come after the result is out (child.then)."""
    trail: list[Attempt] = []
    d: str | None = None
    try:
        prepare()
        check_socket_dir(plan.socket)
        who, kind = plan.principal, plan.source.value
        _interpose(plan.socket, plan.krb5_config)
        import gssapi

        d = _scratch()
        staged, why = _stage(plan, d)
        if staged:  # read when a krb5 context is made: at the first call that needs one
            os.environ["KRB5CCNAME"] = f"FILE:{staged}"
        if not child.wait_gate():
            _remove(d)
            os._exit(0)  # the handler took another source: gssproxy is never asked

        got: tuple[Any, SourceToken] | None = None
        taken = False
        if staged:
            try:
                creds, st, taken = _from_cache(plan, staged)
                got = creds, st
                how = plan.how(ProxyPhase.ACQUIRE)
                note = f"cached credential: no {how}"
                if not taken:
                    note = f"gssproxy renewed the cached credential ({how})"
                trail.append(Attempt(kind, "note", f"{who} via {plan.socket}: {note}"))
            except (gssapi.exceptions.GSSError, UpcallError) as e:
                why = e.message if isinstance(e, UpcallError) else str(e)
                os.unlink(staged)  # no X-GSSPROXY entry: the interposer stays remote-only
        if why:
            note = f"cached credential not used ({why[:200]}); asking gssproxy afresh"
            trail.append(Attempt(kind, "note", note))
        if got is None:
            got = _fresh(plan, trail)
        creds, st = got
        # the worker ends in os._exit: releasing the handle would be one more round trip
        # to gssproxy before the result is written
        _keep.append(creds)
        how = "from the cached credential" if taken else plan.how(ProxyPhase.INIT)
        trail.append(Attempt(kind, "ok", f"{st.principal} for {st.spn} ({how})"))
        # a repeat whose credential gssproxy left as it was: the daemon holds it already
        kept = staged is not None and taken and _unchanged(staged, plan.cached)
    except BaseException as e:
        if d is not None:
            _remove(d)
        if isinstance(e, UpcallError):
            e.trail = trail
        raise
    child.then(partial(_after, creds, d, plan.export_cred and not kept))
    return {"token": st.to_json(), "trail": [a.as_dict() for a in trail]}


def _after(creds: Any, d: str, export: bool) -> dict[str, object] | None:
    """Worker, once its result is out: the credential for the daemon's cache (the
    follow-up line), then the scratch directory goes."""
    try:
        cred = _export(creds, d) if export else None
    finally:
        _remove(d)
    return {"cred": cred[0], "cred_expires": cred[1]} if cred else None


def _fresh(plan: ProxyPlan, trail: list[Attempt]) -> tuple[Any, SourceToken]:
    """gssproxy's full path: acquire (S4U2Self) and init (S4U2Proxy), failures classified."""
    import gssapi

    who, kind = plan.principal, plan.source.value
    try:
        creds = _acquire(plan, None)
    except gssapi.exceptions.GSSError as e:
        f = _failure(e, plan, ProxyPhase.ACQUIRE, "", f"gssproxy ({plan.socket}) for {who}")
        trail.append(Attempt(kind, "failed", f.message, f.reason.value))
        raise f from e
    how = plan.how(ProxyPhase.ACQUIRE)
    trail.append(Attempt(kind, "note", f"{who} via {plan.socket} ({how})"))
    return creds, _token(plan, creds, trail)
