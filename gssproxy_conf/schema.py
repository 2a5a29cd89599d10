"""YAML nodes -> validated ``model.Config``. Reports every problem with file:line at once.

The schema is documented in docs/gssproxy-conf.md; keep the two in step. Unknown keys are
errors (a typo must not silently drop a setting), and scalars are typed strictly: ``"101"``
is not a uid.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TypeVar

from . import model as m
from . import validators as v
from .errors import Code, ConfigError, Location, Problem
from .yaml_loader import YMap, YNode, YScalar, YSeq, load_text

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)


class _Invalid(Exception):
    """Raised by converters; caught per field so that all problems are collected."""

    def __init__(self, code: Code, message: str, loc: Location) -> None:
        super().__init__(message)
        self.problem = Problem(code, message, loc)


def _kind(node: YNode) -> str:
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a list"
    return f"{type(node.value).__name__} {node.value!r}" if node.value is not None else "null"


# --- scalar converters: node -> value or _Invalid -------------------------------------------


def _str(node: YNode) -> str:
    if not isinstance(node, YScalar) or not isinstance(node.value, str):
        raise _Invalid(Code.BAD_TYPE, f"expected a string, got {_kind(node)}", node.loc)
    return node.value


def _checked(check: Callable[[str], str | None]) -> Callable[[YNode], str]:
    def conv(node: YNode) -> str:
        value = _str(node)
        err = check(value)
        if err:
            raise _Invalid(Code.BAD_VALUE, err, node.loc)
        return value

    return conv


def _path(check: Callable[[str], str | None] = v.absolute_path) -> Callable[[YNode], PurePosixPath]:
    def conv(node: YNode) -> PurePosixPath:
        return PurePosixPath(_checked(check)(node))

    return conv


def _bool(node: YNode) -> bool:
    if not isinstance(node, YScalar) or not isinstance(node.value, bool):
        raise _Invalid(Code.BAD_TYPE, f"expected true or false, got {_kind(node)}", node.loc)
    return node.value


def _int_in(lo: int, hi: int, what: str = "a number") -> Callable[[YNode], int]:
    def conv(node: YNode) -> int:
        value = node.value if isinstance(node, YScalar) else None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(Code.BAD_TYPE, f"expected {what}, got {_kind(node)}", node.loc)
        if not lo <= value <= hi:
            raise _Invalid(Code.BAD_VALUE, f"{value} is outside {lo}..{hi}", node.loc)
        return value

    return conv


_uid = _int_in(0, 2**32 - 2, "a numeric uid")
# the helper refuses min_uid 0 (uid 0 is never impersonated anyway): its parser decides
_min_uid = _int_in(1, 2**32 - 2, "a numeric uid of at least 1")


def _enum(cls: type[E]) -> Callable[[YNode], E]:
    def conv(node: YNode) -> E:
        value = _str(node)
        for member in cls:
            if member.value == value:
                return member
        choices = ", ".join(str(mb.value) for mb in cls)
        raise _Invalid(Code.BAD_VALUE, f"{value!r} is not one of: {choices}", node.loc)

    return conv


def _list(
    conv: Callable[[YNode], T], *, unique: bool = True, min_items: int = 0
) -> Callable[[YNode], tuple[T, ...]]:
    def inner(node: YNode) -> tuple[T, ...]:
        if not isinstance(node, YSeq):
            raise _Invalid(Code.BAD_TYPE, f"expected a list, got {_kind(node)}", node.loc)
        if len(node.items) < min_items:
            raise _Invalid(Code.BAD_VALUE, f"needs at least {min_items} item(s)", node.loc)
        out: list[T] = []
        for item in node.items:
            value = conv(item)
            if unique and value in out:
                raise _Invalid(Code.CONFLICT, f"{value!r} is listed twice", item.loc)
            out.append(value)
        return tuple(out)

    return inner


def _pairs(
    key_check: Callable[[str], str | None], conv: Callable[[YNode], T]
) -> Callable[[YNode], tuple[tuple[str, T], ...]]:
    """A mapping with free-form (but checked) keys, kept in file order."""

    def inner(node: YNode) -> tuple[tuple[str, T], ...]:
        if not isinstance(node, YMap):
            raise _Invalid(Code.BAD_TYPE, f"expected a mapping, got {_kind(node)}", node.loc)
        out = []
        for key, (key_loc, value) in node.entries.items():
            err = key_check(key)
            if err:
                raise _Invalid(Code.BAD_VALUE, err, key_loc)
            out.append((key, conv(value)))
        return tuple(out)

    return inner


# --- mappings with a fixed set of keys ---------------------------------------------------------


class _Section:
    """Reads the fields of one mapping, recording problems instead of stopping at the first."""

    def __init__(self, node: YNode, where: str, allowed: set[str], problems: list[Problem]) -> None:
        self.problems = problems
        self.where = where
        self.is_map = self.ok = isinstance(node, YMap)
        self.prefix = f"{where}." if where != "top level" else ""
        self.map = node if isinstance(node, YMap) else YMap({}, node.loc)
        self.loc = node.loc
        if not self.ok:
            self._add(Code.BAD_TYPE, f"{where} must be a mapping, got {_kind(node)}", node.loc)
            return
        for key, (key_loc, _) in self.map.entries.items():
            if key not in allowed:
                near = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                known = ", ".join(sorted(allowed))
                self._add(
                    Code.UNKNOWN_KEY,
                    f"unknown key {key!r} in {where}{hint} (known: {known})",
                    key_loc,
                )

    def _add(self, code: Code, message: str, loc: Location) -> None:
        self.problems.append(Problem(code, message, loc))
        self.ok = False

    def node(self, key: str) -> YNode | None:
        entry = self.map.entries.get(key)
        return entry[1] if entry else None

    def key_loc(self, key: str) -> Location:
        entry = self.map.entries.get(key)
        return entry[0] if entry else self.loc

    def get(self, key: str, conv: Callable[[YNode], T], default: T) -> T:
        node = self.node(key)
        if node is None:
            return default
        try:
            return conv(node)
        except _Invalid as exc:
            self._add(
                exc.problem.code,
                f"{self.prefix}{key}: {exc.problem.message}",
                exc.problem.location or self.loc,
            )
            return default

    def need(self, key: str, conv: Callable[[YNode], T], placeholder: T) -> T:
        if self.node(key) is None:
            if self.is_map:  # a non-mapping was already reported
                self._add(Code.MISSING_KEY, f"{self.prefix}{key} is required", self.loc)
            return placeholder
        return self.get(key, conv, placeholder)


_PLACEHOLDER_PATH = PurePosixPath("/")


def _client(node: YNode, problems: list[Problem]) -> m.Client:
    s = _Section(node, "client", {"principal", "keytab", "sid"}, problems)
    return m.Client(
        principal=s.need("principal", _checked(v.principal), ""),
        keytab=s.need("keytab", _path(), _PLACEHOLDER_PATH),
        sid=s.get("sid", _checked(v.sid), None),
    )


def _smb(node: YNode, problems: list[Problem]) -> m.Smb:
    s = _Section(
        node, "smb", {"servers", "impersonate", "socket", "policy", "min_uid", "deadline"}, problems
    )
    return m.Smb(
        servers=s.need("servers", _list(_checked(v.hostname), min_items=1), ()),
        impersonate=s.get("impersonate", _bool, True),
        socket=s.get("socket", _path(v.socket_path), m.DEFAULT_SMB_SOCKET),
        policy=s.get("policy", _enum(m.Mode), m.Mode.LOCAL_FIRST),
        min_uid=s.get("min_uid", _min_uid, 1000),
        # the helper accepts (0, 300] (policy_yaml): the same bound here
        deadline=s.get("deadline", _int_in(1, 300, "seconds"), 10),
    )


def _nfs(node: YNode, problems: list[Problem]) -> m.Nfs | None:
    s = _Section(node, "nfs", {"enable", "impersonate", "socket", "servers"}, problems)
    nfs = m.Nfs(
        impersonate=s.get("impersonate", _bool, False),
        socket=s.get("socket", _path(v.socket_path), None),
        servers=s.get("servers", _list(_checked(v.hostname)), ()),
    )
    # opt-in: an NFS client service next to a distribution's own can stop gssproxy
    return nfs if s.get("enable", _bool, False) else None


def _protected(node: YNode, where: str, problems: list[Problem]) -> m.ProtectedUser:
    s = _Section(node, where, {"name", "uid", "keytab", "principal", "socket"}, problems)
    return m.ProtectedUser(
        name=s.need("name", _checked(v.login), ""),
        uid=s.need("uid", _uid, 0),
        keytab=s.need("keytab", _path(), _PLACEHOLDER_PATH),
        principal=s.get("principal", _checked(v.principal), None),
        socket=s.get("socket", _path(v.socket_path), None),
    )


def _local(node: YNode, where: str, problems: list[Problem]) -> m.LocalUser:
    s = _Section(node, where, {"name", "uid", "principal"}, problems)
    return m.LocalUser(
        name=s.need("name", _checked(v.login), ""),
        uid=s.need("uid", _uid, 0),
        principal=s.need("principal", _checked(_principal_with_realm), ""),
    )


def _principal_with_realm(value: str) -> str | None:
    err = v.principal(value)
    if not err and "@" not in value:
        return f"{value!r} needs its realm (like aduser@EXAMPLE.COM)"
    return err


def _share(node: YNode) -> str:
    value = _str(node)
    parsed = v.unc(value)
    if isinstance(parsed, str):
        raise _Invalid(Code.BAD_VALUE, parsed, node.loc)
    return value


def _option(node: YNode) -> str:
    value = _str(node)
    if not value or "," in value or any(c.isspace() for c in value):
        raise _Invalid(Code.BAD_VALUE, f"{value!r}: give one mount option per list item", node.loc)
    name = value.split("=", 1)[0]
    if name in {"multiuser", "cruid"}:
        raise _Invalid(Code.BAD_VALUE, f"{name} is always added; remove it", node.loc)
    return value


def _automount(node: YNode, problems: list[Problem]) -> m.Automount:
    s = _Section(node, "automount", {"map", "mountpoint", "shares", "options"}, problems)
    return m.Automount(
        map=s.need("map", _path(), _PLACEHOLDER_PATH),
        mountpoint=s.need("mountpoint", _path(), _PLACEHOLDER_PATH),
        shares=s.need("shares", _pairs(v.map_key, _share), ()),
        options=s.get("options", _list(_option), ("sec=krb5",)),
    )


def _helper(node: YNode, problems: list[Problem]) -> m.Helper:
    s = _Section(node, "helper", {"path", "policy", "krb5_conf", "args"}, problems)
    return m.Helper(
        path=s.get("path", _path(), m.DEFAULT_HELPER),
        policy=s.get("policy", _path(), m.DEFAULT_POLICY),
        krb5_conf=s.get("krb5_conf", _path(), None),
        args=s.get("args", _list(_checked(v.request_key_word), unique=False), ()),
    )


def _account(value: str) -> str | None:
    if v.login(value) or not value.endswith("$"):
        return f"{value!r} is not a computer account name (like FS1$)"
    return None


def _ad(node: YNode, problems: list[Problem]) -> m.Ad:
    s = _Section(
        node,
        "ad",
        {
            "base_dn",
            "computers",
            "users",
            "kdc",
            "server_accounts",
            "extra_rbcd_sids",
            "account_uac",
            "rbcd_group",
            "dns",
        },
        problems,
    )
    # accepted for old files, ignored: the AD renderings now read the current values
    ignored_sids: tuple[str, ...] = ()
    ignored_uacs: tuple[tuple[str, int], ...] = ()
    s.get("extra_rbcd_sids", _list(_checked(v.sid)), ignored_sids)
    s.get("account_uac", _pairs(v.login, _int_in(0, 2**32 - 1)), ignored_uacs)
    return m.Ad(
        base_dn=s.get("base_dn", _checked(v.dn), None),
        computers=s.get("computers", _checked(v.dn), "CN=Computers"),
        users=s.get("users", _checked(v.dn), "CN=Users"),
        kdc=s.get("kdc", _enum(m.KdcFlavor), m.KdcFlavor.SAMBA),
        server_accounts=s.get("server_accounts", _pairs(v.hostname, _checked(_account)), ()),
        rbcd_group=s.get("rbcd_group", _checked(v.group_name), None),
        dns=s.get("dns", _pairs(v.login, _checked(v.dn)), ()),
    )


def _items(
    node: YNode | None,
    what: str,
    build: Callable[[YNode, str, list[Problem]], T],
    problems: list[Problem],
) -> tuple[T, ...]:
    if node is None:
        return ()
    if not isinstance(node, YSeq):
        problems.append(
            Problem(Code.BAD_TYPE, f"{what} must be a list, got {_kind(node)}", node.loc)
        )
        return ()
    return tuple(build(item, f"{what}[{i}]", problems) for i, item in enumerate(node.items))


TOP_KEYS = {
    "version",
    "realm",
    "client",
    "delegation",
    "smb",
    "nfs",
    "protected_users",
    "local_users",
    "automount",
    "helper",
    "ad",
    "auth_to_local_names",
    "deny_groups",
}


def build(root: YNode, warnings: list[Problem] | None = None) -> m.Config:
    """Validate a loaded tree; raise ``ConfigError`` listing every problem. Parts that are
    valid but cannot work as written are appended to ``warnings`` (if given)."""
    problems: list[Problem] = []
    top = _Section(root, "top level", TOP_KEYS, problems)
    top.get("version", _int_in(1, 1, "version 1"), 1)
    realm = top.need("realm", _checked(v.realm), "X")

    def section(key: str, fn: Callable[[YNode, list[Problem]], T]) -> T | None:
        node = top.node(key)
        return fn(node, problems) if node is not None else None

    client = section("client", _client)
    smb = section("smb", _smb)
    for key in ("client", "smb"):
        if top.node(key) is None and top.is_map:
            problems.append(Problem(Code.MISSING_KEY, f"{key} is required", top.loc))
    config = m.Config(
        realm=realm,
        client=client or m.Client("", _PLACEHOLDER_PATH),
        smb=smb or m.Smb(()),
        delegation=top.get("delegation", _enum(m.Delegation), m.Delegation.PROTOCOL_TRANSITION),
        nfs=section("nfs", _nfs),
        protected_users=_items(
            top.node("protected_users"), "protected_users", _protected, problems
        ),
        local_users=_items(top.node("local_users"), "local_users", _local, problems),
        automount=section("automount", _automount),
        helper=section("helper", _helper) or m.Helper(),
        ad=section("ad", _ad) or m.Ad(),
        auth_to_local_names=top.get("auth_to_local_names", _bool, False),
    )
    ad_kdc = config.ad.kdc
    config = dataclasses.replace(
        config,
        deny_groups=top.get(
            "deny_groups",
            _list(_checked(v.group_name)),
            m.PROTECTED_USERS_GROUPS if ad_kdc is m.KdcFlavor.SAMBA else (),
        ),
    )
    if not problems:
        problems.extend(_cross_checks(config, top))
    if problems:
        raise ConfigError(sorted(problems, key=_line_order))
    if warnings is not None:
        warnings.extend(_warnings(config, top))
    return config


def _line_order(p: Problem) -> tuple[int, int]:
    return (p.location.line, p.location.column) if p.location else (0, 0)


def _at(top: _Section, *path: str | int) -> Location:
    """Best location for a nested key: the deepest node that exists along ``path``."""
    node: YNode = top.map
    loc = top.loc
    for step in path:
        nxt: YNode | None = None
        if isinstance(step, str) and isinstance(node, YMap) and step in node.entries:
            loc, nxt = node.entries[step]
        elif isinstance(step, int) and isinstance(node, YSeq) and step < len(node.items):
            nxt = node.items[step]
            loc = nxt.loc
        if nxt is None:
            break
        node = nxt
    return loc


def _cross_checks(c: m.Config, top: _Section) -> list[Problem]:
    """Rules that relate several fields; only run when every field parsed."""
    out: list[Problem] = []

    def bad(code: Code, msg: str, *path: str | int) -> None:
        out.append(Problem(code, msg, _at(top, *path)))

    if "@" in c.client.principal and c.client.principal.split("@", 1)[1] != c.realm:
        bad(
            Code.CONFLICT,
            f"client.principal is in another realm than {c.realm}",
            "client",
            "principal",
        )
    if not c.smb.impersonate and c.smb.policy in (m.Mode.PROXY_FIRST, m.Mode.PROXY_ONLY):
        bad(
            Code.CONFLICT,
            f"smb.policy {c.smb.policy.value} needs smb.impersonate: true "
            "(without impersonation there is no SMB proxy service)",
            "smb",
            "policy",
        )
    sockets: dict[PurePosixPath, tuple[str | int, ...]] = {c.smb.socket: ("smb", "socket")}
    root_dirs = {c.smb.socket.parent} | {c.protected_socket(u).parent for u in c.protected_users}
    if c.nfs and c.nfs.socket:
        if c.nfs.socket.parent in root_dirs:
            bad(
                Code.CONFLICT,
                "nfs.socket must be in another directory than the SMB sockets: NFS "
                "clients connect as the user (a traversable directory), the SMB helper as root "
                "(a 0700 directory)",
                "nfs",
                "socket",
            )
        sockets[c.nfs.socket] = ("nfs", "socket")
    seen_names: dict[str, str] = {}
    seen_uids: dict[int, str] = {}
    for i, pu in enumerate(c.protected_users):
        sock = c.protected_socket(pu)
        if sock in sockets:
            bad(
                Code.CONFLICT,
                f"protected user {pu.name} needs a socket of its own; {sock} is already used",
                "protected_users",
                i,
            )
        elif v.socket_path(str(sock)):
            bad(
                Code.BAD_VALUE,
                f"protected user {pu.name}: {v.socket_path(str(sock))}",
                "protected_users",
                i,
            )
        sockets[sock] = ("protected_users", i)
        if pu.principal and "@" in pu.principal and pu.principal.split("@", 1)[1] != c.realm:
            bad(
                Code.CONFLICT,
                "a protected user's principal must be in the client's realm",
                "protected_users",
                i,
                "principal",
            )
    named: list[tuple[str, int, str, int]] = [
        *(("protected_users", i, u.name, u.uid) for i, u in enumerate(c.protected_users)),
        *(("local_users", i, u.name, u.uid) for i, u in enumerate(c.local_users)),
    ]
    for kind, i, name, uid in named:
        if name in seen_names:
            bad(
                Code.CONFLICT, f"user {name} already appears in {seen_names[name]}", kind, i, "name"
            )
        elif uid in seen_uids:
            bad(Code.CONFLICT, f"uid {uid} already appears in {seen_uids[uid]}", kind, i, "uid")
        elif name == "root" or uid == 0:
            bad(Code.BAD_VALUE, "root is never impersonated and needs no entry", kind, i)
        seen_names.setdefault(name, kind)
        seen_uids.setdefault(uid, kind)
    if c.automount:
        servers = set(c.smb.servers)
        for key, share in c.automount.shares:
            parsed = v.unc(share)
            if isinstance(parsed, tuple) and parsed[0] not in servers:
                bad(
                    Code.CONFLICT,
                    f"share {key}: {parsed[0]} is not in smb.servers, so no "
                    "delegation is configured for it",
                    "automount",
                    "shares",
                    key,
                )
        secs = [o for o in c.automount.options if o.startswith("sec=")]
        if len(secs) != 1 or secs[0] not in {"sec=krb5", "sec=krb5i"}:
            bad(
                Code.BAD_VALUE,
                "automount.options needs exactly one of sec=krb5 or sec=krb5i",
                "automount",
                "options",
            )
        if c.automount.map == c.automount.mountpoint:
            bad(
                Code.CONFLICT,
                "automount.map and automount.mountpoint are the same path",
                "automount",
                "map",
            )
    if c.helper.args:
        err = helper_argument_errors(c)
        if err:
            bad(Code.BAD_VALUE, f"helper.args: cifs-upcall refuses them: {err}", "helper", "args")
    known_hosts = set(c.smb.servers) | set(c.nfs.servers if c.nfs else ())
    for host, _ in c.ad.server_accounts:
        if host not in known_hosts:
            bad(
                Code.CONFLICT,
                f"ad.server_accounts: {host} is not in smb.servers or nfs.servers",
                "ad",
                "server_accounts",
                host,
            )
    return out


def helper_argument_errors(c: m.Config) -> str | None:
    """The helper's own parser decides (the generator may import the helper, not the reverse)."""
    from upcall.cli import argument_errors

    from .render.requestkey import arguments

    return argument_errors([*arguments(c), "%k"])


def _warnings(c: m.Config, top: _Section) -> list[Problem]:
    """Valid input that the helper will not act on as the author probably expects."""
    out: list[Problem] = []
    ad = top.node("ad")
    if isinstance(ad, YMap):
        for key in ("account_uac", "extra_rbcd_sids"):
            if key in ad.entries:
                out.append(
                    Problem(
                        Code.DEPRECATED,
                        f"ad.{key} is ignored: the LDIF is rendered from the directory's current "
                        "values (gssproxy-conf ad --current EXPORT), the other renderings add",
                        ad.entries[key][0],
                    )
                )
    for i, u in enumerate(c.local_users):
        if c.smb.impersonate and u.uid < c.smb.min_uid:
            out.append(
                Problem(
                    Code.BELOW_MIN_UID,
                    f"local user {u.name} (uid {u.uid}) is below smb.min_uid {c.smb.min_uid}: "
                    "cifs-upcall never impersonates below min_uid (a hard limit no rule lifts), so "
                    f"only the name mapping for own tickets is used. To impersonate {u.name}, set "
                    f"smb.min_uid: {u.uid} (every uid from {u.uid} up may then be impersonated) "
                    "or give the account a uid >= min_uid; to serve it from its own keytab "
                    "instead, list it under protected_users",
                    _at(top, "local_users", i, "uid"),
                )
            )
    return out


def load(text: str, path: str = "<string>", warnings: list[Problem] | None = None) -> m.Config:
    """YAML text -> validated model (or ``ConfigError``); see ``build`` for ``warnings``."""
    return build(load_text(text, path), warnings)


def load_file(path: str, warnings: list[Problem] | None = None) -> m.Config:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(
            [Problem(Code.IO, f"cannot read: {exc.strerror}", Location(path, 0))]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem(Code.YAML_SYNTAX, f"not UTF-8 ({exc.reason})", Location(path, 1))]
        ) from None
    return load(text, path, warnings)
