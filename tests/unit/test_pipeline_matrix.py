"""run_upcall driven by fake workers (the `workers` seam): the fallback order of every mode,
the final error's choice and composition, the deadline budget, the strict acceptance of a
worker's result and the cache hand-over. No fork, no root, no KDC."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from upcall import pipeline
from upcall.errors import (
    BadPolicy,
    CredentialError,
    DeadlineExceeded,
    PolicyError,
    Reason,
    UpcallError,
    WorkerProtocolError,
)
from upcall.kernel.payload import SpnegoMsg
from upcall.kernel.request import Request, parse_description
from upcall.policy import file as policy_file
from upcall.policy.rules import Defaults, Match, Mode, Policy, ProxyKind, Rule, Step
from upcall.sources.base import Attempt, SourceKind, SourceToken
from upcall.sources.local import LocalPlan
from upcall.sources.proxy import ProxyPlan
from upcall.sources.proxy_cache import CacheKey, ProxyCache
from upcall.worker import child

UID = 4000123  # unknown to the host's NSS: named through principal_map
PRINCIPAL = "alice@LAB.TEST"
SOCKET = "/run/gssproxy/cifs.sock"
KEY = bytes(range(16))


def _req(uid: int = UID, sec: str = "krb5", extra: str = ";upcall_target=mount") -> Request:
    return parse_description(
        f"ver=0x2;host=fs1.lab.test;ip4=192.0.2.10;sec={sec};uid={uid:#x};creduid={uid:#x}{extra}"
    )


def _token(kind: SourceKind, principal: str = PRINCIPAL) -> dict[str, Any]:
    return SourceToken(
        kind, b"\x60\x03tok", KEY, 18, principal, "cifs/fs1.lab.test@LAB.TEST", kind.impersonates
    ).to_json()


def _ok(kind: SourceKind, **extra: Any) -> dict[str, Any]:
    trail = [Attempt(kind.value, "ok", f"{PRINCIPAL} via {kind.value}").as_dict()]
    return {"token": _token(kind), "trail": trail, **extra}


Behaviour = dict[str, Any] | UpcallError | Callable[[], dict[str, Any]]


class FakeWorkers(pipeline.SerialWorkers):
    """Canned result dicts (or errors) per step; records every call (start() is the serial
    one: a step is recorded when it runs)."""

    def __init__(self, **by_step: Behaviour) -> None:
        self.by_step = by_step
        self.calls: list[tuple[Step, LocalPlan | ProxyPlan, float, str]] = []

    @property
    def steps(self) -> list[Step]:
        return [c[0] for c in self.calls]

    def run(self, step: Step, plan: LocalPlan | ProxyPlan, budget: float, what: str) -> Any:
        self.calls.append((step, plan, budget, what))
        b = self.by_step[step.name]
        if isinstance(b, UpcallError):
            raise b
        if callable(b):
            return b()
        return b


def _local_fail() -> CredentialError:
    return CredentialError("no tickets in FILE:/tmp/krb5cc_x", hint="run kinit")


def _proxy_fail() -> CredentialError:
    e = CredentialError(
        "gssproxy socket missing", hint="start gssproxy", reason=Reason.PROXY_UNAVAILABLE
    )
    e.trail = [Attempt("proxy", "failed", "connect refused", "proxy-unavailable")]
    return e


@pytest.fixture
def krb5(tmp_path: Path) -> str:
    p = tmp_path / "krb5.conf"
    p.write_text(
        "[libdefaults]\n default_realm = LAB.TEST\n[domain_realm]\n .lab.test = LAB.TEST\n"
    )
    return str(p)


@pytest.fixture
def use_policy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Policy], None]]:
    def set_policy(pol: Policy) -> None:
        monkeypatch.setattr(policy_file, "load", lambda path: pol)

    yield set_policy


def _policy(mode: Mode, *, socket: str | None = SOCKET, **defaults: Any) -> Policy:
    return Policy(
        defaults=Defaults(mode=mode, socket=socket, **defaults),
        principal_map={str(UID): PRINCIPAL},
        origin="test policy",
    )


def _run(w: FakeWorkers, krb5: str, req: Request | None = None, **opts: Any) -> pipeline.Outcome:
    o = pipeline.Options(host_krb5_config=krb5, **opts)
    return pipeline.run_upcall(req or _req(), o, workers=w)


# ---- the mode x failure matrix -----------------------------------------------------------

MATRIX = [
    # mode, local, proxy, steps run, ok source or failing reason
    (Mode.LOCAL_ONLY, "ok", None, ["LOCAL"], "ccache"),
    (Mode.LOCAL_ONLY, "fail", None, ["LOCAL"], "no-credentials"),
    (Mode.LOCAL_FIRST, "ok", "ok", ["LOCAL"], "ccache"),
    (Mode.LOCAL_FIRST, "fail", "ok", ["LOCAL", "PROXY"], "proxy"),
    (Mode.LOCAL_FIRST, "fail", "fail", ["LOCAL", "PROXY"], "proxy-unavailable"),
    (Mode.PROXY_FIRST, "ok", "ok", ["PROXY"], "proxy"),
    (Mode.PROXY_FIRST, "ok", "fail", ["PROXY", "LOCAL"], "ccache"),
    (Mode.PROXY_FIRST, "fail", "fail", ["PROXY", "LOCAL"], "proxy-unavailable"),
    (Mode.PROXY_ONLY, None, "ok", ["PROXY"], "proxy"),
    (Mode.PROXY_ONLY, None, "fail", ["PROXY"], "proxy-unavailable"),
]


@pytest.mark.parametrize(("mode", "local", "proxy", "steps", "result"), MATRIX)
def test_mode_failure_matrix(
    use_policy: Callable[[Policy], None],
    krb5: str,
    mode: Mode,
    local: str | None,
    proxy: str | None,
    steps: list[str],
    result: str,
) -> None:
    use_policy(_policy(mode))
    w = FakeWorkers(
        LOCAL=_ok(SourceKind.CCACHE) if local == "ok" else _local_fail(),
        PROXY=_ok(SourceKind.PROXY) if proxy == "ok" else _proxy_fail(),
    )
    out = _run(w, krb5)
    assert [s.name for s in w.steps] == steps
    assert out.trail[0].source == "policy" and mode.value in out.trail[0].detail
    if out.ok:
        assert out.source == result and out.reason is None
        assert out.principal == PRINCIPAL and out.token is not None
        assert out.token.impersonated is (result == "proxy")
        assert out.payload is not None
        msg = SpnegoMsg.unpack(out.payload)
        assert msg.version == 2 and msg.session_key == KEY and b"\x60\x03tok" in msg.blob
    else:
        assert out.reason is not None and out.reason.value == result
        assert out.payload is None and out.token is None
    left = [t for t in out.trail if t.outcome == "left"]
    assert len(left) == len(steps) - (1 if out.ok else 0)
    if not out.ok:
        assert left[-1].detail.endswith("; no source left")
        if len(steps) == 2:
            assert left[0].detail.endswith("; next source")


def test_proxy_error_wins_and_carries_the_local_reason(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.LOCAL_FIRST))
    out = _run(FakeWorkers(LOCAL=_local_fail(), PROXY=_proxy_fail()), krb5)
    assert out.reason is Reason.PROXY_UNAVAILABLE
    assert out.message == "gssproxy socket missing"
    assert out.hint == (
        "start gssproxy (own credentials: no-credentials: no tickets in FILE:/tmp/krb5cc_x)"
    )
    # the worker's own trail is kept, before the pipeline's "left" entry
    failed = [t for t in out.trail if t.outcome == "failed"]
    assert failed == [Attempt("proxy", "failed", "connect refused", "proxy-unavailable")]


def test_proxy_only_failure_has_no_local_part(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.PROXY_ONLY))
    out = _run(FakeWorkers(PROXY=_proxy_fail()), krb5)
    assert out.hint == "start gssproxy"


def test_proxy_only_with_proxy_refused_fails_closed_without_running_anything(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.PROXY_ONLY, min_uid=UID + 1))
    w = FakeWorkers()
    out = _run(w, krb5)
    assert w.calls == []
    assert out.reason is Reason.POLICY
    assert out.message == (
        f"mode proxy-only allows only gssproxy, and uid {UID} is below min_uid {UID + 1}"
    )
    assert "own tickets are not used in proxy-only mode" in out.hint
    skipped = [t for t in out.trail if t.outcome == "skipped"]
    assert skipped and skipped[0].reason == "policy-denied"


def test_excluded_user_turns_local_failure_into_policy_denial(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.LOCAL_FIRST, min_uid=UID + 1))
    w = FakeWorkers(LOCAL=_local_fail())
    out = _run(w, krb5)
    assert w.steps == [Step.LOCAL]
    assert out.reason is Reason.POLICY
    assert out.message == "no tickets in FILE:/tmp/krb5cc_x"
    assert out.hint.startswith("run kinit; impersonation is not used: uid ")
    assert "below min_uid" in out.hint and "(no rule matched: defaults of test policy" in out.hint


def test_own_keytab_socket_refused_for_uid_0_names_gssproxy(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.LOCAL_FIRST, proxy=ProxyKind.OWN_KEYTAB))
    w = FakeWorkers(LOCAL=_local_fail())
    out = _run(w, krb5, _req(uid=0))
    assert w.steps == [Step.LOCAL]
    assert out.reason is Reason.POLICY
    assert "; gssproxy is not used: uid 0 never gets credentials from gssproxy" in out.hint


def test_own_keytab_step_runs_and_may_claim_only_proxy_keytab(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.PROXY_ONLY, proxy=ProxyKind.OWN_KEYTAB))
    w = FakeWorkers(PROXY_KEYTAB=_ok(SourceKind.PROXY_KEYTAB))
    out = _run(w, krb5)
    assert out.ok and out.source == "proxy-keytab" and out.token is not None
    assert not out.token.impersonated
    step, plan, _, what = w.calls[0]
    assert step is Step.PROXY_KEYTAB and isinstance(plan, ProxyPlan)
    assert what == "gssproxy (own keytab)" and plan.kind is ProxyKind.OWN_KEYTAB

    w = FakeWorkers(PROXY_KEYTAB=_ok(SourceKind.PROXY))  # an impersonation claim
    out = _run(w, krb5)
    assert out.reason is Reason.INTERNAL and "claimed source proxy" in out.message


def test_no_socket_means_local_failure_as_is(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.LOCAL_FIRST, socket=None))
    w = FakeWorkers(LOCAL=_local_fail())
    out = _run(w, krb5)
    assert w.steps == [Step.LOCAL]
    assert out.reason is Reason.NO_CREDENTIALS and out.hint == "run kinit"
    skipped = [t for t in out.trail if t.outcome == "skipped"]
    assert skipped[0].detail == "no gssproxy socket is configured"
    assert skipped[0].reason == ""


def test_no_default_realm_keeps_proxy_out(
    use_policy: Callable[[Policy], None], tmp_path: Path
) -> None:
    use_policy(Policy(defaults=Defaults(mode=Mode.LOCAL_FIRST, socket=SOCKET)))
    empty = tmp_path / "krb5.conf"
    empty.write_text("")
    w = FakeWorkers(LOCAL=_local_fail())
    # uid 0 has a login name but is refused; a named non-root uid needs a realm
    out = _run(w, str(empty), _req(uid=os.getuid() or 65534))
    assert w.steps == [Step.LOCAL]
    assert out.reason in (Reason.NO_CREDENTIALS, Reason.POLICY)


# ---- what the plans carry --------------------------------------------------------------


def test_plans_carry_request_and_decision(use_policy: Callable[[Policy], None], krb5: str) -> None:
    use_policy(_policy(Mode.LOCAL_FIRST))
    w = FakeWorkers(LOCAL=_local_fail(), PROXY=_ok(SourceKind.PROXY))
    req = parse_description(
        f"ver=0x2;host=FS1.lab.test;ip4=192.0.2.10;sec=krb5;uid={UID:#x};creduid={UID:#x};"
        "user=svc$;pid=0x1;upcall_target=mount"
    )
    out = _run(w, krb5, req, trust_dns=True, keytab="/etc/k.keytab", krb5_config="/k5")
    assert out.ok
    (_, lplan, _, lwhat), (_, pplan, _, pwhat) = w.calls
    assert isinstance(lplan, LocalPlan) and isinstance(pplan, ProxyPlan)
    assert lwhat == "local credential search" and pwhat == "gssproxy (impersonation)"
    assert (lplan.host, lplan.trust_dns, lplan.keytab, lplan.krb5_config) == (
        "FS1.lab.test", True, "/etc/k.keytab", "/k5",
    )  # fmt: skip
    assert lplan.keytab_principal == "svc$" and lplan.pidfd == -1 and lplan.ns.enter == ()
    assert (lplan.ident.uid, lplan.ident.name) == (UID, None)
    assert (lplan.target.uid, lplan.target.gid) == (UID, 65534)
    assert lplan.ccache.origin == "default" and "upcall_target=mount" in lplan.ccache.note
    assert (pplan.principal, pplan.socket, pplan.trust_dns) == (PRINCIPAL, SOCKET, True)
    assert pplan.krb5_config == krb5 and pplan.cached is None and not pplan.export_cred


def test_mskrb5_uses_the_microsoft_oid(use_policy: Callable[[Policy], None], krb5: str) -> None:
    use_policy(_policy(Mode.LOCAL_ONLY))
    krb = _run(FakeWorkers(LOCAL=_ok(SourceKind.CCACHE)), krb5)
    ms = _run(FakeWorkers(LOCAL=_ok(SourceKind.CCACHE)), krb5, _req(sec="mskrb5"))
    assert krb.payload is not None and ms.payload is not None
    krb_blob, ms_blob = SpnegoMsg.unpack(krb.payload).blob, SpnegoMsg.unpack(ms.payload).blob
    # 1.2.840.48018.1.2.2 (MS KRB5) vs 1.2.840.113554.1.2.2 (KRB5)
    assert b"\x2a\x86\x48\x82\xf7\x12\x01\x02\x02" in ms_blob
    assert b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02" in krb_blob


def test_iakerb_is_refused_before_any_worker(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.LOCAL_FIRST))
    w = FakeWorkers()
    out = _run(w, krb5, _req(sec="iakerb"))
    assert w.calls == [] and out.reason is Reason.UNSUPPORTED_MECH
    assert "IAKerb" in out.message and out.hint


def test_bad_policy_fails_closed(monkeypatch: pytest.MonkeyPatch, krb5: str) -> None:
    def bad(path: str | None) -> Policy:
        raise BadPolicy("policy.yaml:3: unknown key 'mdoe'")

    monkeypatch.setattr(policy_file, "load", bad)
    w = FakeWorkers()
    out = _run(w, krb5)
    assert w.calls == [] and out.reason is Reason.BAD_POLICY and not out.ok
    assert out.message == "policy.yaml:3: unknown key 'mdoe'"
    assert out.seconds >= 0


def test_explicit_missing_policy_path_is_bad_policy(tmp_path: Path, krb5: str) -> None:
    out = _run(FakeWorkers(), krb5, policy_path=str(tmp_path / "nope.yaml"))
    assert out.reason is Reason.BAD_POLICY and "no such policy file" in out.message


def test_rule_matching_on_groups_uses_host_nss(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    import grp
    import pwd

    me = pwd.getpwuid(os.getuid())
    group = grp.getgrgid(me.pw_gid).gr_name
    rule = Rule(Match(groups=(group,)), Mode.LOCAL_ONLY, None, where="t.yaml:7")
    use_policy(Policy(rules=(rule,)))
    w = FakeWorkers(LOCAL=_ok(SourceKind.CCACHE))
    out = _run(w, krb5, _req(uid=os.getuid()))
    assert out.ok and out.trail[0].detail.startswith("rule t.yaml:7: local-only")


# ---- strict acceptance of a worker's result ------------------------------------------------


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"token": _token(SourceKind.PROXY), "trail": []}, "claimed source proxy"),
        ({"token": _token(SourceKind.CCACHE)}, "malformed result"),
        ({"token": _token(SourceKind.CCACHE), "trail": [], "cred": "00"}, "malformed result"),
        ({"token": {"source": "ccache"}, "trail": []}, "malformed token"),
        ({"token": _token(SourceKind.CCACHE), "trail": [{"x": 1}]}, "malformed trail entry"),
    ],
)
def test_local_worker_result_is_checked_strictly(
    use_policy: Callable[[Policy], None], krb5: str, result: dict[str, Any], message: str
) -> None:
    use_policy(_policy(Mode.LOCAL_FIRST))
    w = FakeWorkers(LOCAL=result, PROXY=_ok(SourceKind.PROXY))
    out = _run(w, krb5)
    # a misbehaving local worker is passed over; the proxy still serves
    assert out.ok and out.source == "proxy"
    left = [t for t in out.trail if t.outcome == "left"]
    assert left[0].source == "local" and message in left[0].detail
    assert left[0].reason == "internal-error"
    assert all(t.source != "ccache" for t in out.trail)


def test_malformed_result_alone_is_an_internal_error(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.LOCAL_ONLY))
    out = _run(FakeWorkers(LOCAL={"token": _token(SourceKind.KEYTAB)}), krb5)
    assert out.reason is Reason.INTERNAL and out.message == "local credential search wrote a " \
        "malformed result"  # fmt: skip


# ---- deadline budget -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_budget_is_what_is_left_and_the_proxy_cap(
    use_policy: Callable[[Policy], None], krb5: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(pipeline, "time", clock)
    use_policy(_policy(Mode.LOCAL_FIRST, deadline=3.0))

    def slow_local() -> dict[str, Any]:
        clock.now += 4.0
        raise _local_fail()

    w = FakeWorkers(LOCAL=slow_local, PROXY=_ok(SourceKind.PROXY))
    out = _run(w, krb5, deadline=10.0)
    assert out.ok
    assert [c[2] for c in w.calls] == [10.0, 3.0]  # local: all of it; proxy: its cap
    assert out.seconds == pytest.approx(4.0)

    clock.now = 1000.0

    def slower_local() -> dict[str, Any]:
        clock.now += 8.5
        raise _local_fail()

    w = FakeWorkers(LOCAL=slower_local, PROXY=_ok(SourceKind.PROXY))
    _run(w, krb5, deadline=10.0)
    assert [c[2] for c in w.calls] == [10.0, pytest.approx(1.5)]  # less left than the cap


def test_no_time_left_skips_the_next_source_with_deadline_exceeded(
    use_policy: Callable[[Policy], None], krb5: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(pipeline, "time", clock)
    use_policy(_policy(Mode.PROXY_FIRST))

    def hung_proxy() -> dict[str, Any]:
        clock.now += 10.0
        raise DeadlineExceeded("gssproxy (impersonation) did not finish within 10s")

    w = FakeWorkers(PROXY=hung_proxy, LOCAL=_ok(SourceKind.CCACHE))
    out = _run(w, krb5, deadline=10.0)
    assert w.steps == [Step.PROXY]  # the local worker never ran
    assert out.reason is Reason.DEADLINE
    assert out.message == "gssproxy (impersonation) did not finish within 10s"
    assert "(own credentials: deadline-exceeded: no time left for the local source)" in out.hint
    left = [t for t in out.trail if t.outcome == "left"]
    assert [t.source for t in left] == ["proxy", "local"]


def test_zero_deadline_runs_nothing(use_policy: Callable[[Policy], None], krb5: str) -> None:
    use_policy(_policy(Mode.LOCAL_ONLY))
    w = FakeWorkers(LOCAL=_ok(SourceKind.CCACHE))
    out = _run(w, krb5, deadline=0.0)
    assert w.calls == [] and out.reason is Reason.DEADLINE
    assert out.message == "no time left for the local source"


# ---- the daemon's cache ----------------------------------------------------------------------


def _with_follow_up(res: dict[str, Any], line: bytes | None) -> child.Answer:
    """A gssproxy worker's result as child.run gives it, its follow-up line (the exported
    credential, written after the result) waiting in a real pipe."""
    r, w = os.pipe()
    if line is not None:
        os.write(w, line + b"\n")
    os.close(w)
    return child.Answer(res, child._Parked(-1, r))


def _cred_line(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def test_cache_hands_the_blob_in_and_the_new_credential_out_after_the_reply(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.PROXY_ONLY))
    cache = ProxyCache()
    key = CacheKey(PRINCIPAL, "fs1.lab.test", SOCKET)
    assert cache.put(key, b"old-blob", 2**31)
    line = _cred_line(cred=b"new".hex(), cred_expires=2**31 - 1)
    w = FakeWorkers(PROXY=_with_follow_up(_ok(SourceKind.PROXY), line))
    o = pipeline.Options(host_krb5_config=krb5)
    out = pipeline.run_upcall(_req(), o, cache=cache, workers=w)
    assert out.ok
    plan = w.calls[0][1]
    assert isinstance(plan, ProxyPlan) and plan.cached == b"old-blob" and plan.export_cred
    assert out.cache_later is not None and out.cache_later() == (key, b"new", 2**31 - 1)


@pytest.mark.parametrize(
    "line",
    [
        None,  # the credential was not exported (or left as it was)
        b"",  # the worker ended without one
        _cred_line(cred="zz", cred_expires=5),
        _cred_line(cred=b"x".hex(), cred_expires=5, token="more"),
        b"[1, 2]",
        b"not json",
    ],
)
def test_no_or_a_malformed_follow_up_caches_nothing_and_keeps_the_token(
    use_policy: Callable[[Policy], None], krb5: str, line: bytes | None
) -> None:
    use_policy(_policy(Mode.PROXY_FIRST))
    o = pipeline.Options(host_krb5_config=krb5)
    w = FakeWorkers(PROXY=_with_follow_up(_ok(SourceKind.PROXY), line))
    out = pipeline.run_upcall(_req(), o, cache=ProxyCache(), workers=w)
    assert out.ok and out.source == "proxy"
    assert out.cache_later is not None and out.cache_later() is None


def test_a_credential_in_the_result_itself_is_refused(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    """It comes only as the follow-up line: in the result it is a malformed result."""
    use_policy(_policy(Mode.PROXY_FIRST))
    o = pipeline.Options(host_krb5_config=krb5)
    bad = _ok(SourceKind.PROXY, cred=b"x".hex(), cred_expires=5)
    w = FakeWorkers(PROXY=bad, LOCAL=_ok(SourceKind.CCACHE))
    out = pipeline.run_upcall(_req(), o, cache=ProxyCache(), workers=w)
    assert out.ok and out.source == "ccache"
    assert any("malformed result" in t.detail for t in out.trail)


def test_a_local_workers_follow_up_never_reaches_the_cache(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    """A worker that entered a caller is hostile: a credential line after its result is
    never read, whatever it offers."""
    use_policy(_policy(Mode.LOCAL_FIRST))
    line = _cred_line(cred=b"forged".hex(), cred_expires=2**31 - 1)
    w = FakeWorkers(LOCAL=_with_follow_up(_ok(SourceKind.CCACHE), line))
    o = pipeline.Options(host_krb5_config=krb5)
    out = pipeline.run_upcall(_req(), o, cache=ProxyCache(), workers=w)
    assert out.ok and out.source == "ccache" and out.cache_later is None


def test_without_cache_no_credential_is_asked_for(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.PROXY_ONLY))
    line = _cred_line(cred=b"x".hex(), cred_expires=5)
    w = FakeWorkers(PROXY=_with_follow_up(_ok(SourceKind.PROXY), line))
    out = _run(w, krb5)
    plan = w.calls[0][1]
    assert out.ok and out.cache_later is None
    assert isinstance(plan, ProxyPlan) and not plan.export_cred


# ---- the caller: pinned and read ---------------------------------------------------------------


def test_app_target_reads_the_caller_and_closes_its_pidfd(
    use_policy: Callable[[Policy], None], krb5: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_policy(_policy(Mode.LOCAL_ONLY))
    uid = os.getuid()
    req = _req(uid=uid, extra=f";pid={os.getpid():#x};upcall_target=app")
    w = FakeWorkers(LOCAL=_ok(SourceKind.CCACHE))
    closed: list[int] = []
    real_close = os.close
    monkeypatch.setattr(pipeline.os, "close", lambda fd: (closed.append(fd), real_close(fd))[1])
    out = _run(w, krb5, req)
    assert out.ok
    plan = w.calls[0][1]
    assert isinstance(plan, LocalPlan)
    assert plan.pidfd >= 0 and plan.pidfd in closed  # the parent closed its pin
    assert plan.ns.enter == ()  # our own namespaces
    if uid == 0:
        assert plan.ccache.note == "uid 0: environment not probed"
    else:
        # the caller's own uid: its environment was probed (/proc/self/environ)
        assert plan.ccache.origin in ("environ", "default")
        assert plan.ccache.note != f"caller runs as uid {uid}, not {uid}"


def test_env_probe_off_uses_the_default_cache(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.LOCAL_ONLY))
    req = _req(uid=os.getuid(), extra=f";pid={os.getpid():#x};upcall_target=app")
    w = FakeWorkers(LOCAL=_ok(SourceKind.CCACHE))
    assert _run(w, krb5, req, env_probe=False).ok
    plan = w.calls[0][1]
    assert isinstance(plan, LocalPlan) and plan.ccache.name is None


def test_caller_of_another_uid_is_not_probed(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.LOCAL_ONLY))
    other = 4000999 if os.getuid() != 4000999 else 4000998
    req = _req(uid=other, extra=f";pid={os.getpid():#x}")
    w = FakeWorkers(LOCAL=_ok(SourceKind.CCACHE))
    assert _run(w, krb5, req).ok
    plan = w.calls[0][1]
    assert isinstance(plan, LocalPlan)
    assert plan.ccache.note == f"caller runs as uid {os.getuid()}, not {other}"
    # a uid unknown to NSS that is not the caller's gets nogroup
    assert plan.ident.gid == 65534


def test_thread_pid_is_noted_and_the_process_used(
    use_policy: Callable[[Policy], None], krb5: str, thread_id: int
) -> None:
    use_policy(_policy(Mode.LOCAL_ONLY))
    req = _req(uid=os.getuid(), extra=f";pid={thread_id:#x}")
    out = _run(FakeWorkers(LOCAL=_ok(SourceKind.CCACHE)), krb5, req)
    assert out.ok
    notes = [t for t in out.trail if t.source == "caller"]
    assert notes == [
        Attempt(
            "caller",
            "note",
            f"pid {thread_id} is a thread of process {os.getpid()}: using the process",
        )
    ]


def test_gone_caller_is_caller_gone(use_policy: Callable[[Policy], None], krb5: str) -> None:
    use_policy(_policy(Mode.LOCAL_ONLY))
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    w = FakeWorkers(LOCAL=_ok(SourceKind.CCACHE))
    out = _run(w, krb5, _req(extra=f";pid={pid:#x}"))
    assert w.calls == [] and out.reason is Reason.CALLER_GONE


def test_forked_workers_is_the_default(
    use_policy: Callable[[Policy], None], krb5: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a seam, ForkedWorkers hands the source's run to child.run."""
    seen: list[tuple[str, float, str]] = []
    kept: list[tuple[int, ...]] = []

    def fake_child_run(fn: Any, budget: float, what: str, keep: tuple[int, ...] = ()) -> Any:
        seen.append((fn.func.__module__, budget, what))
        kept.append(keep)
        raise PolicyError("stop here")

    monkeypatch.setattr(pipeline.child, "run", fake_child_run)
    use_policy(_policy(Mode.LOCAL_FIRST))
    out = pipeline.run_upcall(_req(), pipeline.Options(host_krb5_config=krb5, deadline=7.0))
    assert [s[0] for s in seen] == ["upcall.sources.local", "upcall.sources.proxy"]
    assert seen[0][1] == pytest.approx(7.0, abs=0.5) and seen[0][2] == "local credential search"
    assert seen[1][2] == "gssproxy (impersonation)"
    assert kept[1] == ()  # the proxy worker keeps nothing of the parent's
    assert out.reason is Reason.POLICY


def test_outcome_properties_without_token() -> None:
    out = pipeline.Outcome(ok=False, request=_req(), uid=UID)
    assert (out.source, out.principal, out.spn) == ("", "", "")


def test_worker_protocol_error_is_internal() -> None:
    assert WorkerProtocolError("x").reason is Reason.INTERNAL


# ---- the gssproxy step started early (Workers.start) ---------------------------------------------


class OverlapWorkers(FakeWorkers):
    """FakeWorkers whose start() is recorded: what was started early, with speculate, and
    whether its result was asked for or it was cancelled."""

    def __init__(self, **by_step: Behaviour) -> None:
        super().__init__(**by_step)
        self.events: list[str] = []

    def run(self, step: Step, plan: LocalPlan | ProxyPlan, budget: float, what: str) -> Any:
        self.events.append(f"run {step.name}")
        return super().run(step, plan, budget, what)

    def start(
        self, step: Step, plan: LocalPlan | ProxyPlan, what: str, *, speculate: bool
    ) -> pipeline.Started:
        self.events.append(f"start {step.name} speculate={speculate}")
        workers = self

        class _Started:
            def result(self, budget: float) -> Any:
                workers.events.append(f"result {step.name}")
                return FakeWorkers.run(workers, step, plan, budget, what)

            def cancel(self) -> None:
                workers.events.append(f"cancel {step.name}")

        return _Started()


def test_local_first_starts_gssproxy_early_and_cancels_it_when_local_succeeds(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.LOCAL_FIRST))
    w = OverlapWorkers(LOCAL=_ok(SourceKind.CCACHE), PROXY=_ok(SourceKind.PROXY))
    out = _run(w, krb5)
    assert out.ok and out.source == "ccache"
    assert w.events == ["start PROXY speculate=False", "run LOCAL", "cancel PROXY"]
    assert w.steps == [Step.LOCAL]  # gssproxy was never asked


def test_local_first_uses_the_early_worker_when_local_fails(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.LOCAL_FIRST))
    w = OverlapWorkers(LOCAL=_local_fail(), PROXY=_ok(SourceKind.PROXY))
    out = _run(w, krb5)
    assert out.ok and out.source == "proxy"
    assert w.events == ["start PROXY speculate=False", "run LOCAL", "result PROXY"]
    assert w.calls[1][2] <= 10.0  # the proxy's budget is taken when its turn comes


def test_a_cached_credential_lets_the_early_worker_ask_gssproxy_at_once(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.LOCAL_FIRST))
    cache = ProxyCache()
    assert cache.put(CacheKey(PRINCIPAL, "fs1.lab.test", SOCKET), b"blob", 2**31)
    w = OverlapWorkers(LOCAL=_local_fail(), PROXY=_ok(SourceKind.PROXY))
    out = pipeline.run_upcall(_req(), pipeline.Options(host_krb5_config=krb5), cache=cache,
                              workers=w)  # fmt: skip
    assert out.ok and w.events[0] == "start PROXY speculate=True"


@pytest.mark.parametrize("mode", [Mode.PROXY_FIRST, Mode.PROXY_ONLY, Mode.LOCAL_ONLY])
def test_nothing_starts_early_unless_gssproxy_follows_the_local_step(
    use_policy: Callable[[Policy], None], krb5: str, mode: Mode
) -> None:
    use_policy(_policy(mode))
    w = OverlapWorkers(LOCAL=_local_fail(), PROXY=_ok(SourceKind.PROXY))
    _run(w, krb5)
    for i, e in enumerate(w.events):  # a step started in its turn: its result is next
        if e.startswith("start"):
            assert w.events[i + 1] == "result " + e.split()[1]


def test_an_early_worker_is_cancelled_when_the_local_step_raises_something_else(
    use_policy: Callable[[Policy], None], krb5: str
) -> None:
    use_policy(_policy(Mode.LOCAL_FIRST))

    def boom() -> dict[str, Any]:
        raise RuntimeError("bug")

    w = OverlapWorkers(LOCAL=boom, PROXY=_ok(SourceKind.PROXY))
    with pytest.raises(RuntimeError):
        _run(w, krb5)
    assert w.events[-1] == "cancel PROXY"
