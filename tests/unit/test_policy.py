"""The pure policy layer: rule matching, source order and the hard limits on impersonation."""

from __future__ import annotations

import pytest

from upcall.policy.rules import (
    Decision,
    Defaults,
    Match,
    Mode,
    Policy,
    ProxyKind,
    Rule,
    ServerFacts,
    Step,
    UidRange,
    UserFacts,
    decide,
)

SOCK = "/run/gssproxy/cifs/cifs.sock"
FS1 = ServerFacts("fs1.example.com", "EXAMPLE.COM")
ALICE = UserFacts(1500, "alice", frozenset({"users", "eng"}))


def _policy(*rules: Rule, **defaults: object) -> Policy:
    return Policy(
        defaults=Defaults(**defaults),  # type: ignore[arg-type]
        deny_users=frozenset({"svc-backup"}),
        principal_map={"labuser": "aduser@EXAMPLE.COM", "4242": "nameless@EXAMPLE.COM"},
        rules=rules,
        origin="test",
    )


def _d(p: Policy, user: UserFacts = ALICE, server: ServerFacts = FS1) -> Decision:
    return decide(p, server, user, "EXAMPLE.COM")


@pytest.mark.parametrize(
    ("mode", "steps"),
    [
        (Mode.LOCAL_ONLY, (Step.LOCAL,)),
        (Mode.LOCAL_FIRST, (Step.LOCAL, Step.PROXY)),
        (Mode.PROXY_FIRST, (Step.PROXY, Step.LOCAL)),
        (Mode.PROXY_ONLY, (Step.PROXY,)),
    ],
)
def test_mode_orders_sources(mode: Mode, steps: tuple[Step, ...]) -> None:
    d = _d(_policy(mode=mode, socket=SOCK))
    assert d.steps == steps
    assert d.socket == (SOCK if Step.PROXY in steps else None)
    assert d.principal == ("alice@EXAMPLE.COM" if Step.PROXY in steps else None)


@pytest.mark.parametrize(
    ("user", "why"),
    [
        (UserFacts(0, "root"), "uid 0 is never impersonated"),
        (UserFacts(999, "daemonish"), "uid 999 is below min_uid 1000"),
        (UserFacts(31337, "svc-backup"), "svc-backup is in deny_users"),
        (UserFacts(5000, None), "uid 5000 has no login name and no principal_map entry"),
    ],
)
@pytest.mark.parametrize("mode", [Mode.LOCAL_FIRST, Mode.PROXY_FIRST, Mode.PROXY_ONLY])
def test_hard_limits_never_reach_the_proxy(user: UserFacts, why: str, mode: Mode) -> None:
    # even a rule naming them explicitly cannot lift the limits
    explicit = Rule(Match(uids=(UidRange(0, 99999),)), mode, SOCK)
    for p in (_policy(mode=mode, socket=SOCK), _policy(explicit)):
        d = _d(p, user)
        assert Step.PROXY not in d.steps and d.socket is None and d.principal is None
        assert d.no_proxy == why and d.excluded
        assert d.steps == (() if mode is Mode.PROXY_ONLY else (Step.LOCAL,))  # fails closed


def test_min_uid_is_configurable() -> None:
    assert _d(_policy(mode=Mode.LOCAL_FIRST, socket=SOCK, min_uid=2000)).no_proxy
    assert _d(_policy(mode=Mode.LOCAL_FIRST, socket=SOCK, min_uid=1500)).uses_proxy


def test_no_socket_means_no_proxy() -> None:
    d = _d(_policy(mode=Mode.PROXY_FIRST))
    assert d.steps == (Step.LOCAL,) and d.no_proxy == "no gssproxy socket is configured"
    assert not d.excluded  # not a denial: nothing to impersonate with
    assert _d(_policy(mode=Mode.PROXY_ONLY)).steps == ()


def test_built_in_defaults_never_impersonate() -> None:
    d = _d(Policy())
    assert d.mode is Mode.LOCAL_FIRST and d.steps == (Step.LOCAL,)


def test_principal_map_and_default_realm() -> None:
    p = _policy(mode=Mode.LOCAL_FIRST, socket=SOCK)
    assert _d(p, UserFacts(1001, "labuser")).principal == "aduser@EXAMPLE.COM"
    assert _d(p, UserFacts(4242, None)).principal == "nameless@EXAMPLE.COM"
    d = decide(p, FS1, ALICE, None)
    assert not d.uses_proxy and "default realm" in d.no_proxy


def test_first_matching_rule_wins_and_each_criterion_counts() -> None:
    rules = (
        Rule(Match(servers=("*.corp.example.com",)), Mode.PROXY_ONLY, "/s/corp", "f:1"),
        Rule(Match(realms=("OTHER.ORG",)), Mode.PROXY_FIRST, "/s/other", "f:2"),
        Rule(Match(servers=("fs1.example.com",), groups=("batch",)), Mode.PROXY_ONLY, None, "f:3"),
        Rule(Match(uids=(UidRange(1400, 1600),), users=("alice",)), Mode.PROXY_FIRST, None, "f:4"),
        Rule(Match(servers=("FS1.Example.COM",)), Mode.LOCAL_ONLY, None, "f:5"),
    )
    p = _policy(*rules, mode=Mode.LOCAL_FIRST, socket="/s/default")
    d = _d(p, server=ServerFacts("Files.Corp.Example.com.", "EXAMPLE.COM"))
    assert (d.mode, d.socket, d.why) == (Mode.PROXY_ONLY, "/s/corp", "rule f:1: proxy-only")
    assert _d(p, server=ServerFacts("x.other.org", "OTHER.ORG")).socket == "/s/other"
    assert _d(p, server=ServerFacts("x.other.org", None)).socket == "/s/default"  # no realm
    batch = UserFacts(1500, "alice", frozenset({"batch"}))
    assert _d(p, batch).why.startswith("rule f:3") and _d(p, batch).socket == "/s/default"
    assert _d(p).why.startswith("rule f:4")
    assert _d(p, UserFacts(1700, "alice")).why.startswith("rule f:5")
    assert _d(p, UserFacts(1700, "alice")).steps == (Step.LOCAL,)
    other = _d(p, UserFacts(1700, "bob"), ServerFacts("fs2.example.com"))
    assert other.why.startswith("no rule matched") and other.socket == "/s/default"


# --- own-keytab sockets: the user's own key, not impersonation -----------------------------------

OWN = "/run/gssproxy/cifs/protected-svc-backup.sock"
BACKUP = UserFacts(31337, "svc-backup")


def _own(mode: Mode = Mode.LOCAL_FIRST, match: Match | None = None) -> Rule:
    m = match or Match(users=("svc-backup",))
    return Rule(m, mode, OWN, "f:1", ProxyKind.OWN_KEYTAB)


@pytest.mark.parametrize(
    ("mode", "steps"),
    [
        (Mode.LOCAL_FIRST, (Step.LOCAL, Step.PROXY_KEYTAB)),
        (Mode.PROXY_FIRST, (Step.PROXY_KEYTAB, Step.LOCAL)),
        (Mode.PROXY_ONLY, (Step.PROXY_KEYTAB,)),
    ],
)
def test_deny_listed_user_gets_own_keytab_socket(mode: Mode, steps: tuple[Step, ...]) -> None:
    d = _d(_policy(_own(mode), mode=Mode.LOCAL_FIRST, socket=SOCK), BACKUP)
    assert d.steps == steps and d.socket == OWN and d.proxy is ProxyKind.OWN_KEYTAB
    assert d.principal == "svc-backup@EXAMPLE.COM" and not d.no_proxy and not d.excluded
    assert d.proxy_step is Step.PROXY_KEYTAB and d.uses_proxy


def test_deny_listed_user_is_still_refused_on_the_impersonating_socket() -> None:
    # the same user, no own-keytab rule: the defaults' impersonating socket is refused
    d = _d(_policy(mode=Mode.PROXY_FIRST, socket=SOCK), BACKUP)
    assert d.steps == (Step.LOCAL,) and d.excluded and d.no_proxy == "svc-backup is in deny_users"
    # an impersonating rule naming them explicitly cannot lift it either
    imp = Rule(Match(users=("svc-backup",)), Mode.PROXY_ONLY, SOCK, "f:2", ProxyKind.IMPERSONATE)
    d = _d(_policy(imp, socket=OWN, proxy=ProxyKind.OWN_KEYTAB), BACKUP)
    assert d.steps == () and d.proxy_step is Step.PROXY and d.excluded


@pytest.mark.parametrize(
    "user", [UserFacts(999, "daemonish"), BACKUP, UserFacts(500, "svc-backup")]
)
def test_own_keytab_ignores_min_uid_and_deny_users(user: UserFacts) -> None:
    d = _d(_policy(_own(match=Match(uids=(UidRange(1, 99999),)))), user)
    assert d.steps == (Step.LOCAL, Step.PROXY_KEYTAB) and d.socket == OWN


def test_own_keytab_is_never_for_uid_0() -> None:
    p = _policy(_own(Mode.PROXY_ONLY, Match(uids=(UidRange(0, 99999),))))
    d = _d(p, UserFacts(0, "root"))
    assert d.steps == () and d.socket is None and d.principal is None and d.excluded
    assert d.no_proxy == "uid 0 never gets credentials from gssproxy"
    assert d.proxy_step is Step.PROXY_KEYTAB


def test_own_keytab_nameless_user_needs_a_principal_map_entry() -> None:
    p = _policy(_own(match=Match(uids=(UidRange(4000, 5000),))))
    d = _d(p, UserFacts(5000, None))
    assert d.steps == (Step.LOCAL,) and not d.excluded  # nothing to name: not a denial
    assert d.no_proxy == "uid 5000 has no login name and no principal_map entry"
    assert _d(p, UserFacts(4242, None)).principal == "nameless@EXAMPLE.COM"


def test_rule_inherits_the_defaults_proxy_kind_and_may_override_it() -> None:
    inherit = Rule(Match(users=("svc-backup",)), Mode.PROXY_ONLY, None, "f:1")
    p = _policy(inherit, socket=OWN, proxy=ProxyKind.OWN_KEYTAB)
    assert _d(p, BACKUP).steps == (Step.PROXY_KEYTAB,)
    assert _d(p).proxy is ProxyKind.OWN_KEYTAB  # defaults apply to alice too
    imp = Rule(Match(users=("alice",)), Mode.PROXY_ONLY, SOCK, "f:2", ProxyKind.IMPERSONATE)
    d = _d(_policy(imp, socket=OWN, proxy=ProxyKind.OWN_KEYTAB))
    assert d.steps == (Step.PROXY,) and d.socket == SOCK


def test_deny_groups_is_a_hard_limit_on_impersonation_only() -> None:
    p = Policy(
        defaults=Defaults(mode=Mode.PROXY_FIRST, socket=SOCK),
        deny_groups=frozenset({"protected users"}),
        rules=(Rule(Match(users=("alice",)), Mode.PROXY_ONLY, SOCK),),  # cannot lift it
    )
    member = UserFacts(1500, "alice", frozenset({"users", "protected users"}))
    d = _d(p, member)
    assert Step.PROXY not in d.steps and d.excluded
    assert d.no_proxy == "alice is a member of protected users (deny_groups)"
    assert _d(p, ALICE).steps == (Step.PROXY,)  # not a member: the rule applies
    own = Rule(
        Match(users=("alice",)), Mode.LOCAL_FIRST, "/run/gp/o.sock", proxy=ProxyKind.OWN_KEYTAB
    )
    p_own = Policy(deny_groups=frozenset({"protected users"}), rules=(own,))
    assert _d(p_own, member).steps == (Step.LOCAL, Step.PROXY_KEYTAB)  # not impersonation
