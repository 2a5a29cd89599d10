"""One upcall, stage by stage: request -> caller -> sources -> SPNEGO -> payload.

The keyring is not touched here (cli.py does that), so --dry-run runs exactly this.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from .caller.ccache import CcacheChoice, choose
from .caller.identity import Identity, for_caller, resolve, target
from .caller.namespaces import NamespacePlan, plan
from .caller.procinfo import CallerInfo, ns_inodes, read_caller
from .errors import DeadlineExceeded, PolicyError, Reason, UnsupportedMech, UpcallError
from .kernel.payload import SpnegoMsg
from .kernel.request import Request, SecType
from .krb5.spnego import MechOID, neg_token_init
from .policy.rules import Decision, Policy, ProxyKind, ServerFacts, Step, UserFacts, decide
from .sources.base import Attempt, SourceKind, SourceToken, parse_trail
from .sources.proxy_cache import CacheKey, CredCache, parse_cred
from .worker import child

if TYPE_CHECKING:
    from .sources.local import LocalPlan
    from .sources.proxy import ProxyPlan
    from .worker.child import Result


@dataclass(frozen=True)
class Options:
    """The helper's command-line options that shape one upcall (respond.options builds it)."""

    krb5_config: str | None = None
    keytab: str | None = None
    legacy_uid: bool = False
    trust_dns: bool = False
    env_probe: bool = True
    deadline: float = 10.0  # seconds for the whole credential search
    policy_path: str | None = None  # None: policy_file.DEFAULT_PATH, optional
    host_krb5_config: str | None = None  # the host's krb5.conf for policy and gssproxy


@dataclass(frozen=True)
class Outcome:
    """What run_upcall found: the token and payload, or the reason; the trail either way."""

    ok: bool
    request: Request
    uid: int
    reason: Reason | None = None
    message: str = ""
    hint: str = ""
    token: SourceToken | None = None
    payload: bytes | None = None
    trail: list[Attempt] = field(default_factory=list)
    seconds: float = 0.0
    # a gssproxy credential for the daemon's cache, read once the reply is out (the worker
    # exports it after its result): () -> (key, blob, end in unix seconds) or None
    cache_later: Callable[[], tuple[CacheKey, bytes, int] | None] | None = None

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


def _caller(
    req: Request, uid: int, opts: Options, pidfd: int | None
) -> tuple[CallerInfo | None, NamespacePlan]:
    if not req.upcall_target.enters_caller_namespaces or req.pid is None:
        return None, NamespacePlan(())
    # uid 0: DFS referrals reuse the mount's credentials while the env belongs to someone else.
    probe = opts.env_probe and uid != 0
    caller = read_caller(req.pid, want_environ=probe, pidfd=pidfd)
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


def _user_facts(ident: Identity, policy: Policy) -> UserFacts:
    groups: frozenset[str] = frozenset()
    if ident.name is not None and policy.needs_groups:
        import grp

        names = set()
        for gid in os.getgrouplist(ident.name, ident.gid):
            try:
                names.add(grp.getgrgid(gid).gr_name)
            except KeyError:
                continue
        groups = frozenset(names)
    return UserFacts(ident.uid, ident.name, groups)


def _decide(req: Request, ident: Identity, policy: Policy, krb5_config: str | None) -> Decision:
    from .krb5.profile import load

    facts = load(krb5_config) if policy.rules or policy.defaults.socket else None
    realm = facts.host_realm(req.host) if facts and policy.needs_server_realm else None
    server = ServerFacts(req.host, realm)
    return decide(
        policy, server, _user_facts(ident, policy), facts.default_realm if facts else None
    )


def _policy_trail(d: Decision) -> list[Attempt]:
    order = " then ".join(s.value for s in d.steps) or "nothing"
    out = [Attempt("policy", "note", f"{d.why}: try {order}")]
    if d.no_proxy:
        reason = Reason.POLICY.value if d.excluded else ""
        out.append(Attempt(d.proxy_step.value, "skipped", d.no_proxy, reason))
    return out


def _final_error(errors: dict[Step, UpcallError], d: Decision) -> UpcallError:
    """The proxy's failure explains best why the fallback did not help; a policy that kept the
    proxy out turns a local failure into a policy denial with both reasons."""
    if d.proxy_step in errors:
        e = errors[d.proxy_step]
        if Step.LOCAL in errors:
            local = errors[Step.LOCAL]
            e.hint = f"{e.hint} (own credentials: {local.reason.value}: {local.message})"
        return e
    if not errors:
        return PolicyError(
            f"mode {d.mode.value} allows only gssproxy, and {d.no_proxy}",
            hint="own tickets are not used in proxy-only mode: change the policy rule",
        )
    e = errors[Step.LOCAL]
    if d.excluded:
        what = "impersonation" if d.proxy is ProxyKind.IMPERSONATE else "gssproxy"
        return PolicyError(
            e.message,
            hint=f"{e.hint}; {what} is not used: {d.no_proxy} ({d.why})",
        )
    return e


def _local_plan(
    req: Request,
    uid: int,
    opts: Options,
    caller: CallerInfo | None,
    ns: NamespacePlan,
    ident: Identity,
) -> LocalPlan:
    from .sources.local import LocalPlan

    maps = (caller.uid_map, caller.gid_map) if caller and ns.changes_user else ()
    return LocalPlan(
        host=req.host,
        ip=req.ip,
        trust_dns=opts.trust_dns,
        ident=ident,
        target=target(ident, *maps),
        pidfd=caller.pidfd if caller else -1,
        ns=ns,
        ccache=_ccache_choice(req, uid, opts, caller),
        keytab_principal=req.user,
        keytab=opts.keytab,
        krb5_config=opts.krb5_config,
    )


# What each step's worker may claim to have produced (sources/base.py checks it).
_ALLOWED = {
    Step.LOCAL: frozenset({SourceKind.CCACHE, SourceKind.KEYTAB}),
    Step.PROXY: frozenset({SourceKind.PROXY}),
    Step.PROXY_KEYTAB: frozenset({SourceKind.PROXY_KEYTAB}),
}


def _accept(res: dict[str, object], step: Step, what: str) -> tuple[SourceToken, list[Attempt]]:
    """Parent: a worker's success, strictly parsed; the step decides what it may claim."""
    from .errors import WorkerProtocolError

    if set(res) != {"token", "trail"}:
        raise WorkerProtocolError(f"{what} wrote a malformed result")
    token = SourceToken.from_json(res["token"], _ALLOWED[step], what)
    return token, parse_trail(res["trail"], what)


class Started(Protocol):
    """A step's worker started ahead of its turn (Workers.start)."""

    def result(self, budget: float) -> Result: ...

    def cancel(self) -> None: ...


class Workers(Protocol):
    """The seam under the orchestrator: how a step's worker runs and what it returns (the
    untrusted result dict). Tests drive the pipeline with fakes; the helper forks.
    `start` may begin a later step's worker early (the gssproxy step while the local one
    runs); it only ever passes its gate when result() is asked for, or at once when
    `speculate` (the daemon holds a credential for it: no KDC request can follow)."""

    def run(self, step: Step, plan: LocalPlan | ProxyPlan, budget: float, what: str) -> Result: ...

    def start(
        self, step: Step, plan: LocalPlan | ProxyPlan, what: str, *, speculate: bool
    ) -> Started: ...


@dataclass
class _Later:
    """Nothing started early: the step runs when its result is asked for."""

    workers: Workers
    step: Step
    plan: LocalPlan | ProxyPlan
    what: str

    def result(self, budget: float) -> Result:
        return self.workers.run(self.step, self.plan, budget, self.what)

    def cancel(self) -> None:
        pass


class SerialWorkers:
    """start() that starts nothing: each step runs in turn (for in-process and tests)."""

    def run(self, step: Step, plan: LocalPlan | ProxyPlan, budget: float, what: str) -> Result:
        raise NotImplementedError

    def start(
        self, step: Step, plan: LocalPlan | ProxyPlan, what: str, *, speculate: bool
    ) -> Started:
        return _Later(self, step, plan, what)


@dataclass
class _Prepared:
    """A step's prepared worker (child.Ready), given its plan at once: to run (a speculative
    start) or gated, to get as far as its first call to gssproxy and go on only when its
    result is asked for (Ready.result opens the gate)."""

    ready: child.Ready
    fn: Callable[[Any], Result]
    plan: LocalPlan | ProxyPlan
    what: str

    def give(self, gated: bool) -> None:
        self.ready.give(self.fn, self.plan, self.what, gated=gated)

    def result(self, budget: float) -> Result:
        return self.ready.result(budget, self.what)

    def cancel(self) -> None:
        self.ready.close()


class ForkedWorkers(SerialWorkers):
    """Each step in its own forked worker under `budget` seconds (child.run). With
    `overlap`, start() forks a gssproxy worker at once and gives it its plan (child.Ready):
    gated (it goes on when its result is asked for), or to run at once when `speculate`."""

    def __init__(self, overlap: bool = False) -> None:
        self.overlap = overlap

    def run(self, step: Step, plan: LocalPlan | ProxyPlan, budget: float, what: str) -> Result:
        from .sources import local, proxy

        if isinstance(plan, proxy.ProxyPlan):
            return child.run(partial(proxy.run, plan), budget, what)
        keep = (plan.pidfd,) if plan.pidfd >= 0 else ()
        return child.run(partial(local.run, plan), budget, what, keep)

    def start(
        self, step: Step, plan: LocalPlan | ProxyPlan, what: str, *, speculate: bool
    ) -> Started:
        from .sources import proxy

        if not self.overlap or not isinstance(plan, proxy.ProxyPlan):
            return super().start(step, plan, what, speculate=speculate)
        return self._started(child.Ready(proxy.prepare), plan, what, speculate)

    def _started(
        self, ready: child.Ready, plan: ProxyPlan, what: str, speculate: bool
    ) -> _Prepared:
        from .sources import proxy

        prepared = _Prepared(ready, proxy.run, plan, what)
        prepared.give(gated=not (speculate and self.overlap))
        return prepared


class PreparedWorkers(ForkedWorkers):
    """The daemon handler's: the first local step, and unless `proxy` is None (else: the
    socket to prepare for, or "") the first gssproxy step, run in workers forked and
    prepared (preload, mech glue; the gssproxy one without its capabilities) before the
    request arrived (child.Ready), and with `rehearse` (a spare's, forked while a CPU is
    free) rehearsed too; anything else forks as ForkedWorkers does. close() lets unused
    ones go."""

    def __init__(
        self, overlap: bool = True, proxy: str | None = None, rehearse: bool = False
    ) -> None:
        from .sources import local
        from .sources import proxy as gssproxy

        super().__init__(overlap)
        self._ready: child.Ready | None = child.Ready(partial(local.prepare, rehearse=rehearse))
        self._proxy: child.Ready | None = None
        if proxy is not None:
            ahead = partial(gssproxy.prepare, proxy or None, rehearse=rehearse)
            self._proxy = child.Ready(ahead)

    def run(self, step: Step, plan: LocalPlan | ProxyPlan, budget: float, what: str) -> Result:
        from .sources import local, proxy

        if isinstance(plan, local.LocalPlan) and self._ready is not None:
            ready, self._ready = self._ready, None
            return ready.run(local.run, plan, budget, what)
        taken = self._take_proxy(plan)
        if taken is not None:
            return taken[0].run(proxy.run, taken[1], budget, what)
        return super().run(step, plan, budget, what)

    def start(
        self, step: Step, plan: LocalPlan | ProxyPlan, what: str, *, speculate: bool
    ) -> Started:
        taken = self._take_proxy(plan)
        if taken is None:
            return super().start(step, plan, what, speculate=speculate)
        return self._started(*taken, what, speculate)

    def _take_proxy(self, plan: LocalPlan | ProxyPlan) -> tuple[child.Ready, ProxyPlan] | None:
        """The gssproxy worker forked with the spare, if this is its plan and it is ready."""
        from .sources import proxy

        if not isinstance(plan, proxy.ProxyPlan) or self._proxy is None:
            return None
        ready, self._proxy = self._proxy, None
        if not ready.alive():  # it could not prepare (gssproxy did not answer): fork anew
            ready.close()
            return None
        return ready, plan

    def close(self) -> None:
        for ready in (self._ready, self._proxy):
            if ready is not None:
                ready.close()
        self._ready = self._proxy = None


def run_upcall(
    req: Request,
    opts: Options,
    *,
    pidfd: int | None = None,
    cache: CredCache | None = None,
    workers: Workers | None = None,
) -> Outcome:
    """Parent: the whole credential search for one request (no keyring). Never raises an
    UpcallError: the outcome carries the reason. `pidfd`: the thin client's pin of the
    caller (else the caller is pinned here). `cache` (the daemon's): gssproxy credentials of
    earlier upcalls, handed to the proxy worker so a repeat needs no KDC request; a new one
    comes back in `Outcome.cache_update`. Parent process (the handler), host namespaces."""
    from .policy import file as policy_file
    from .sources import proxy

    workers = workers or ForkedWorkers()

    start = time.monotonic()
    end = start + opts.deadline
    uid = req.credential_uid(opts.legacy_uid)
    trail: list[Attempt] = []
    token: SourceToken | None = None
    payload: bytes | None = None
    failure: UpcallError | None = None
    cache_later: Callable[[], tuple[CacheKey, bytes, int] | None] | None = None
    caller: CallerInfo | None = None
    early: Started | None = None
    try:
        mech = _mech(req.sec)
        pol = policy_file.load(opts.policy_path)
        # The decision is about the credential uid alone (host NSS, before any foreign
        # namespace; the caller's ids only stand in for a uid NSS does not know, and then the
        # decision uses nothing of them): made before the caller is read, so that a gssproxy
        # step can start while it is.
        known = resolve(uid, None, None)
        decision = _decide(req, known, pol, opts.host_krb5_config)
        trail.extend(_policy_trail(decision))
        errors: dict[Step, UpcallError] = {}
        pplan: proxy.ProxyPlan | None = None
        key: CacheKey | None = None
        if decision.uses_proxy:
            assert decision.principal is not None and decision.socket is not None
            key = CacheKey(decision.principal, req.host.lower(), decision.socket)
            pplan = proxy.ProxyPlan(
                req.host,
                req.ip,
                opts.trust_dns,
                decision.principal,
                decision.socket,
                decision.proxy,
                opts.host_krb5_config,
                cached=cache.get(key) if cache is not None else None,
                export_cred=cache is not None,
            )
        order = decision.steps
        ahead = len(order) > 1 and order[0] is Step.LOCAL and order[1].is_proxy
        if pplan is not None and ahead and end > time.monotonic():
            # gssproxy's worker prepares (gated) while the user's own credentials are tried;
            # it asks gssproxy only if they fail, or at once when the daemon holds a
            # credential for it (a repeat: no KDC request)
            early = workers.start(order[1], pplan, pplan.label, speculate=pplan.cached is not None)
        caller, ns = _caller(req, uid, opts, pidfd)
        ident = for_caller(known, caller.uid, caller.gid) if caller is not None else known
        if caller is not None and caller.thread is not None:
            note = f"pid {caller.thread} is a thread of process {caller.pid}: using the process"
            trail.append(Attempt("caller", "note", note))
        for step in order:
            left = end - time.monotonic()
            try:
                if left <= 0:
                    raise DeadlineExceeded(f"no time left for the {step.value} source")
                if step.is_proxy:
                    assert pplan is not None
                    # A hung gssproxy makes the interposer wait 15 s per retry: the child is
                    # killed at its own deadline, never later than the upcall's.
                    budget = min(left, pol.defaults.deadline or left)
                    what = pplan.label
                    started = early or workers.start(step, pplan, what, speculate=False)
                    early = None
                    res = started.result(budget)
                else:
                    lplan = _local_plan(req, uid, opts, caller, ns, ident)
                    what = "local credential search"
                    res = workers.run(step, lplan, left, what)
                got, steps = _accept(res, step, what)
                if step.is_proxy and key is not None and cache is not None:
                    cache_later = partial(_cred_later, res, key, what)
            except UpcallError as e:
                trail.extend(e.trail)
                nxt = "next source" if step is not order[-1] else "no source left"
                detail = f"{e.reason.value}: {e.message}; {nxt}"
                trail.append(Attempt(step.value, "left", detail, e.reason.value))
                errors[step] = e
                continue
            trail.extend(steps)
            token = got
            break
        if token is None:
            raise _final_error(errors, decision)
        blob = neg_token_init(mech, token.token)
        payload = SpnegoMsg(req.version, token.session_key, blob).pack()
    except UpcallError as e:
        failure = e
    finally:
        if early is not None:
            early.cancel()  # the user's own credentials did it: gssproxy is not asked
        if caller is not None:
            os.close(caller.pidfd)
    seconds = time.monotonic() - start
    if failure is not None:
        return Outcome(False, req, uid, failure.reason, failure.message, failure.hint,
                       token=None, payload=None, trail=trail, seconds=seconds,
                       cache_later=cache_later)  # fmt: skip
    return Outcome(True, req, uid, token=token, payload=payload, trail=trail, seconds=seconds,
                   cache_later=cache_later)  # fmt: skip


FOLLOW_UP_BOUND = 1.0  # seconds, after the reply, for a gssproxy worker's exported credential


def _cred_later(res: Result, key: CacheKey, what: str) -> tuple[CacheKey, bytes, int] | None:
    """Handler, after its reply: the credential the gssproxy worker that gave `res` exports
    after its result (child.then), strictly parsed; None if it offers none in time or a
    malformed one."""
    from .errors import WorkerProtocolError

    extra = child.follow_up(res, FOLLOW_UP_BOUND, what)
    if extra is None:
        return None
    try:
        cred = parse_cred(extra, what) if set(extra) <= {"cred", "cred_expires"} else None
    except WorkerProtocolError:
        return None
    return (key, *cred) if cred else None
