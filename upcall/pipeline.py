"""One upcall, stage by stage: request -> caller -> sources -> SPNEGO -> payload.

The keyring is not touched here (cli.py does that), so --dry-run runs exactly this.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import child
from .ccache import CcacheChoice, choose
from .errors import Reason, UnsupportedMech, UpcallError
from .identity import resolve
from .namespaces import NamespacePlan, plan
from .payload import SpnegoMsg
from .procinfo import IDENTITY, CallerInfo, ns_inodes, read_caller
from .request import Request, SecType
from .sources.base import SourceToken
from .spnego import MechOID, neg_token_init


@dataclass(frozen=True)
class Options:
    krb5_config: str | None = None
    keytab: str | None = None
    legacy_uid: bool = False
    trust_dns: bool = False
    env_probe: bool = True
    deadline: float = 10.0  # seconds for the whole credential search


@dataclass
class Outcome:
    ok: bool
    request: Request
    uid: int
    reason: Reason | None = None
    message: str = ""
    hint: str = ""
    token: SourceToken | None = None
    payload: bytes | None = None
    trail: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def source(self) -> str:
        return self.token.source.value if self.token else ""

    @property
    def principal(self) -> str:
        return self.token.principal if self.token else ""

    @property
    def spn(self) -> str:
        return self.token.spn if self.token else ""


def _mech(sec: SecType) -> MechOID:
    if sec is SecType.MSKRB5:
        return MechOID.MS_KRB5
    if sec is SecType.IAKERB:
        # IAKerb proxies KDC messages through the server over several legs; cifs.ko makes one
        # round trip and never returns the server's reply, so it cannot work with any helper.
        raise UnsupportedMech(
            "the server offered only IAKerb, which needs a multi-leg exchange cifs.ko cannot make",
            hint="enable plain Kerberos on the server, or mount with sec=krb5 from a client that "
            "reaches the KDC",
        )
    return MechOID.KRB5


def _caller(req: Request, uid: int, opts: Options) -> tuple[CallerInfo | None, NamespacePlan]:
    if not req.upcall_target.enters_caller_namespaces or req.pid is None:
        return None, NamespacePlan(())
    # uid 0: DFS referrals reuse the mount's credentials while the env belongs to someone else.
    probe = opts.env_probe and uid != 0
    caller = read_caller(req.pid, want_environ=probe)
    return caller, plan(ns_inodes("self"), caller.ns_inodes)


def _ccache_choice(
    req: Request, uid: int, opts: Options, caller: CallerInfo | None
) -> CcacheChoice:
    if caller is None:
        why = "upcall_target=mount" if req.pid else "no caller pid"
        return CcacheChoice(None, "default", f"{why}: the uid's default cache")
    if not opts.env_probe:
        return choose(None, probe=False)
    if uid == 0:
        return CcacheChoice(None, "default", "uid 0: environment not probed")
    if caller.uid != uid:
        # The caller's environment belongs to someone else (e.g. root touching a user's mount).
        return CcacheChoice(None, "default", f"caller runs as uid {caller.uid}, not {uid}")
    choice = choose(caller.environ, probe=True)
    if caller.environ is None:
        return CcacheChoice(None, "default", caller.environ_note)
    return choice


def run_upcall(req: Request, opts: Options) -> Outcome:
    from .sources import local

    start = time.monotonic()
    uid = req.credential_uid(opts.legacy_uid)
    out = Outcome(ok=False, request=req, uid=uid)
    try:
        mech = _mech(req.sec)
        caller, ns = _caller(req, uid, opts)
        ident = resolve(uid, caller)  # host NSS, before any foreign namespace
        choice = _ccache_choice(req, uid, opts, caller)
        lplan = local.LocalPlan(
            host=req.host,
            ip=req.ip,
            trust_dns=opts.trust_dns,
            ident=ident,
            pid=req.pid if caller else None,
            ns=ns,
            uid_map=caller.uid_map if caller else IDENTITY,
            gid_map=caller.gid_map if caller else IDENTITY,
            ccache=choice,
            try_ccache=True,
            keytab_principal=req.user,
            keytab=opts.keytab,
            krb5_config=opts.krb5_config,
        )
        res = child.run(lambda: local.run(lplan), opts.deadline, "local credential search")
        out.trail.extend(res["trail"])
        out.token = SourceToken.from_json(res["token"])
        blob = neg_token_init(mech, out.token.token)
        out.payload = SpnegoMsg(req.version, out.token.session_key, blob).pack()
        out.ok = True
    except UpcallError as e:
        out.trail.extend(e.trail)
        out.reason, out.message, out.hint = e.reason, e.message, e.hint
    out.seconds = time.monotonic() - start
    return out
