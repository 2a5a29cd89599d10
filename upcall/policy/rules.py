"""Which credential sources an upcall may use, and whom gssproxy may impersonate. Pure.

The policy file (policy_file.py) is turned into a `Policy`; `decide()` matches the request's
server and user against its rules (first match wins, then `defaults`) and returns the ordered
sources. The hard limits are applied here and nowhere else, so they cannot be configured away
by a rule: uid 0, uids below `min_uid` and `deny_users` are never impersonated, and neither
is a user with no login name and no `principal_map` entry (gssproxy would be asked for a
principal we cannot vouch for).

A socket either impersonates (`proxy: impersonate`: S4U2Self + S4U2Proxy with the client's
keytab) or serves users their own credentials from a client keytab (`proxy: own-keytab`: an
AS exchange with the user's own key, no S4U). Only impersonation is limited as above; an
own-keytab socket is refused only for uid 0, so deny-listed (protected) users can use theirs.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field


class Mode(enum.Enum):
    LOCAL_ONLY = "local-only"
    LOCAL_FIRST = "local-first"
    PROXY_FIRST = "proxy-first"
    PROXY_ONLY = "proxy-only"

    @property
    def wants_proxy(self) -> bool:
        return self is not Mode.LOCAL_ONLY


class ProxyKind(enum.Enum):
    """What the gssproxy service behind a socket does with the principal the helper names."""

    IMPERSONATE = "impersonate"  # S4U2Self + S4U2Proxy with the client's keytab
    OWN_KEYTAB = "own-keytab"  # the user's own key from a client keytab (AS exchange), no S4U


class Step(enum.Enum):
    """A credential source the pipeline runs in its own child."""

    LOCAL = "local"  # the caller's own ccache, then the keytab for user= mounts
    PROXY = "proxy"  # gssproxy: S4U2Self + S4U2Proxy with the client's keytab
    PROXY_KEYTAB = "proxy-keytab"  # gssproxy: the user's own keytab, not impersonation

    @property
    def is_proxy(self) -> bool:
        return self is not Step.LOCAL


PROXY_STEP: dict[ProxyKind, Step] = {
    ProxyKind.IMPERSONATE: Step.PROXY,
    ProxyKind.OWN_KEYTAB: Step.PROXY_KEYTAB,
}

_ORDER: dict[Mode, tuple[Step, ...]] = {
    Mode.LOCAL_ONLY: (Step.LOCAL,),
    Mode.LOCAL_FIRST: (Step.LOCAL, Step.PROXY),
    Mode.PROXY_FIRST: (Step.PROXY, Step.LOCAL),
    Mode.PROXY_ONLY: (Step.PROXY,),
}

DEFAULT_MIN_UID = 1000


@dataclass(frozen=True)
class UidRange:
    first: int
    last: int

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and self.first <= uid <= self.last


@dataclass(frozen=True)
class Match:
    """Every given criterion must hold; within one list, any entry may match."""

    servers: tuple[str, ...] = ()  # shell patterns on the lower-cased host, "*.example.com"
    realms: tuple[str, ...] = ()  # the server's realm (krb5.conf domain_realm / default_realm)
    users: tuple[str, ...] = ()  # login names (host NSS)
    uids: tuple[UidRange, ...] = ()
    groups: tuple[str, ...] = ()  # group names, primary or supplementary (host NSS)

    def server_ok(self, s: ServerFacts) -> bool:
        host = s.host.lower().rstrip(".")
        if self.servers and not any(fnmatch.fnmatchcase(host, p.lower()) for p in self.servers):
            return False
        return not self.realms or (s.realm is not None and s.realm in self.realms)

    def user_ok(self, u: UserFacts) -> bool:
        if self.users and (u.name is None or u.name not in self.users):
            return False
        if self.uids and not any(u.uid in r for r in self.uids):
            return False
        return not self.groups or bool(u.groups.intersection(self.groups))


@dataclass(frozen=True)
class Rule:
    match: Match
    mode: Mode
    socket: str | None  # None: defaults.socket
    where: str = ""  # "file:line", for the trail and errors
    proxy: ProxyKind | None = None  # None: defaults.proxy


@dataclass(frozen=True)
class Defaults:
    mode: Mode = Mode.LOCAL_FIRST
    min_uid: int = DEFAULT_MIN_UID
    deadline: float | None = None  # cap for the proxy child, within the upcall's deadline
    socket: str | None = None
    proxy: ProxyKind = ProxyKind.IMPERSONATE


@dataclass(frozen=True)
class Policy:
    defaults: Defaults = Defaults()
    deny_users: frozenset[str] = frozenset()
    principal_map: Mapping[str, str] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    origin: str = "built-in defaults (no policy file): no gssproxy socket, so never impersonates"

    @property
    def sockets(self) -> frozenset[str]:
        """Every gssproxy socket this policy can send a request to."""
        named = {r.socket for r in self.rules} | {self.defaults.socket}
        return frozenset(s for s in named if s)

    # Members of these groups (host NSS, e.g. AD's "protected users" through winbind or sssd)
    # are never impersonated: Samba's KDC does not refuse S4U for Protected Users itself.
    deny_groups: frozenset[str] = frozenset()

    @property
    def needs_groups(self) -> bool:
        return bool(self.deny_groups) or any(r.match.groups for r in self.rules)

    @property
    def needs_server_realm(self) -> bool:
        return any(r.match.realms for r in self.rules)


@dataclass(frozen=True)
class ServerFacts:
    host: str
    realm: str | None = None


@dataclass(frozen=True)
class UserFacts:
    uid: int
    name: str | None  # login name from the host's NSS
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    mode: Mode  # as configured for this server and user
    steps: tuple[Step, ...]  # what actually runs, in order; may be empty (fails closed)
    socket: str | None  # set iff a proxy step is in steps
    principal: str | None  # whom gssproxy names (impersonates or uses the keytab of); ditto
    why: str  # which rule, for the trail
    no_proxy: str = ""  # why the proxy is not used although the mode wants it
    excluded: bool = False  # no_proxy is a hard limit on the user (not a missing socket/realm)
    proxy: ProxyKind = ProxyKind.IMPERSONATE  # what the socket does (the rule's or defaults')

    @property
    def proxy_step(self) -> Step:
        """The proxy step this decision runs, or would have run had the proxy been allowed."""
        return PROXY_STEP[self.proxy]

    @property
    def uses_proxy(self) -> bool:
        return any(s.is_proxy for s in self.steps)


def _first_rule(policy: Policy, server: ServerFacts, user: UserFacts) -> Rule | None:
    for rule in policy.rules:
        if rule.match.server_ok(server) and rule.match.user_ok(user):
            return rule
    return None


def proxy_refusal(policy: Policy, user: UserFacts, kind: ProxyKind = ProxyKind.IMPERSONATE) -> str:
    """Why `user` may never use a `kind` socket, or "" (the hard limits; rules cannot lift
    them). Own credentials from a keytab are not impersonation: only uid 0 is refused there."""
    if user.uid == 0:
        if kind is ProxyKind.OWN_KEYTAB:
            return "uid 0 never gets credentials from gssproxy"
        return "uid 0 is never impersonated"
    if kind is ProxyKind.OWN_KEYTAB:
        return ""
    if user.uid < policy.defaults.min_uid:
        return f"uid {user.uid} is below min_uid {policy.defaults.min_uid}"
    if user.name is not None and user.name in policy.deny_users:
        return f"{user.name} is in deny_users"
    denied_groups = sorted(user.groups & policy.deny_groups)
    if denied_groups:
        return f"{user.name or user.uid} is a member of {', '.join(denied_groups)} (deny_groups)"
    if user.name is None and str(user.uid) not in policy.principal_map:
        return f"uid {user.uid} has no login name and no principal_map entry"
    return ""


def principal_for(policy: Policy, user: UserFacts, default_realm: str | None) -> str | None:
    """principal_map entry (by login name, or by uid for accounts without one), else
    `<login>@<default realm>`."""
    for key in (user.name, str(user.uid)):
        if key is not None and key in policy.principal_map:
            return policy.principal_map[key]
    if user.name is None or not default_realm:
        return None
    return f"{user.name}@{default_realm}"


def decide(
    policy: Policy, server: ServerFacts, user: UserFacts, default_realm: str | None
) -> Decision:
    """Pure (handler): the ordered sources for this user and server, the hard limits applied."""
    d = policy.defaults
    rule = _first_rule(policy, server, user)
    if rule is not None:
        mode, socket, why = rule.mode, rule.socket or d.socket, f"rule {rule.where}"
        kind = rule.proxy or d.proxy
    else:
        mode, socket, kind = d.mode, d.socket, d.proxy
        why = f"no rule matched: defaults of {policy.origin}"
    step = PROXY_STEP[kind]
    steps = tuple(step if s is Step.PROXY else s for s in _ORDER[mode])
    no_proxy = ""
    principal: str | None = None
    excluded = False
    if mode.wants_proxy:
        no_proxy = proxy_refusal(policy, user, kind)
        # A hard limit explains the failure only where a socket could have served the user:
        # with none configured (no policy file) the local failure itself is the reason.
        excluded = bool(no_proxy) and socket is not None
        if not no_proxy and socket is None:
            no_proxy = "no gssproxy socket is configured"
        if not no_proxy:
            principal = principal_for(policy, user, default_realm)
            if principal is None and user.name is None:
                no_proxy = f"uid {user.uid} has no login name and no principal_map entry"
            elif principal is None:
                no_proxy = "no default realm to name the user's principal in (krb5.conf)"
    if no_proxy:
        steps = tuple(s for s in steps if not s.is_proxy)
    if not any(s.is_proxy for s in steps):
        socket = None
    return Decision(
        mode, steps, socket, principal, f"{why}: {mode.value}", no_proxy, excluded, kind
    )
