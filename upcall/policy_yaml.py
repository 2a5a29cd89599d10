"""Parse the policy file's YAML into the typed Policy model, strictly, with file:line errors.

PyYAML's compose API keeps line numbers on every node: unknown keys, duplicate keys and wrong
types are all reported at once. Split from policy_file so that PyYAML (16 ms to import) is
loaded only when a policy file exists: the hot path without one never pays for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TypeVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import BadPolicy
from .policy import DEFAULT_MIN_UID, Defaults, Match, Mode, Policy, ProxyKind, Rule, UidRange

VERSION = 1
SUN_PATH_MAX = 107  # longer socket paths are silently truncated by gssproxy and the interposer

_UIDS = re.compile(r"(\d+)(?:-(\d+))?")
_PRINCIPAL = re.compile(r"[^@\s/]+(?:/[^@\s/]+)*@[^@\s]+")

T = TypeVar("T")


class _Errors:
    def __init__(self, path: str):
        self.path = path
        self.items: list[str] = []

    def at(self, node: Node, msg: str) -> None:
        self.items.append(f"{self.path}:{node.start_mark.line + 1}: {msg}")


# --- typed readers: each returns None after recording an error -------------------------------


def _mapping(n: Node, err: _Errors, what: str, keys: set[str]) -> dict[str, Node] | None:
    if not isinstance(n, MappingNode):
        err.at(n, f"{what} must be a mapping")
        return None
    out: dict[str, Node] = {}
    for k, v in n.value:
        if not isinstance(k, ScalarNode) or not isinstance(k.value, str):
            err.at(k, f"{what}: keys must be strings")
            continue
        if k.value in out:
            err.at(k, f"{what}: duplicate key {k.value!r}")
        elif k.value not in keys:
            err.at(k, f"{what}: unknown key {k.value!r} (known: {', '.join(sorted(keys))})")
        else:
            out[k.value] = v
    return out


def _scalar(n: Node, err: _Errors, what: str) -> str | None:
    if not isinstance(n, ScalarNode) or n.tag == "tag:yaml.org,2002:null":
        err.at(n, f"{what} must be a single value")
        return None
    return str(n.value)


def _str(n: Node, err: _Errors, what: str) -> str | None:
    v = _scalar(n, err, what)
    if v is not None and n.tag != "tag:yaml.org,2002:str":
        err.at(n, f"{what} must be a string, got {v!r}")
        return None
    return v


def _int(n: Node, err: _Errors, what: str, minimum: int) -> int | None:
    v = _scalar(n, err, what)
    if v is None:
        return None
    if n.tag != "tag:yaml.org,2002:int" or not v.isdigit() or int(v) < minimum:
        err.at(n, f"{what} must be an integer >= {minimum}, got {v!r}")
        return None
    return int(v)


def _seconds(n: Node, err: _Errors, what: str) -> float | None:
    v = _scalar(n, err, what)
    if v is None:
        return None
    try:
        f = float(v) if n.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") else 0.0
    except ValueError:
        f = 0.0
    if not 0 < f <= 300:
        err.at(n, f"{what} must be a number of seconds in (0, 300], got {v!r}")
        return None
    return f


def _mode(n: Node, err: _Errors, what: str) -> Mode | None:
    v = _str(n, err, what)
    if v is None:
        return None
    try:
        return Mode(v)
    except ValueError:
        err.at(n, f"{what} must be one of {', '.join(m.value for m in Mode)}, got {v!r}")
        return None


def _proxy(n: Node, err: _Errors, what: str) -> ProxyKind | None:
    v = _str(n, err, what)
    if v is None:
        return None
    try:
        return ProxyKind(v)
    except ValueError:
        err.at(n, f"{what} must be one of {', '.join(k.value for k in ProxyKind)}, got {v!r}")
        return None


def _socket(n: Node, err: _Errors, what: str) -> str | None:
    v = _str(n, err, what)
    if v is None:
        return None
    if not v.startswith("/") or len(v.encode()) > SUN_PATH_MAX or "\0" in v:
        err.at(n, f"{what} must be an absolute path of at most {SUN_PATH_MAX} bytes")
        return None
    return v


def _list(
    n: Node, err: _Errors, what: str, item: Callable[[Node, _Errors, str], T | None]
) -> tuple[T, ...]:
    nodes = n.value if isinstance(n, SequenceNode) else [n]  # one value is a list of one
    out = [item(x, err, what) for x in nodes]
    return tuple(x for x in out if x is not None)


def _uids(n: Node, err: _Errors, what: str) -> UidRange | None:
    v = _scalar(n, err, what)
    m = _UIDS.fullmatch(v or "")
    if v is None or m is None:
        err.at(n, f"{what}: {v!r} is neither a uid nor a range 'first-last'")
        return None
    first, last = int(m[1]), int(m[2] or m[1])
    if last < first:
        err.at(n, f"{what}: empty range {v!r}")
        return None
    return UidRange(first, last)


def _principal(n: Node, err: _Errors, what: str) -> str | None:
    v = _str(n, err, what)
    if v is not None and not _PRINCIPAL.fullmatch(v):
        err.at(n, f"{what}: {v!r} is not a principal name (user@REALM)")
        return None
    return v


# --- the schema --------------------------------------------------------------------------------


def _defaults(n: Node, err: _Errors) -> Defaults:
    m = _mapping(n, err, "defaults", {"mode", "min_uid", "deadline", "socket", "proxy"}) or {}
    mode = _mode(m["mode"], err, "defaults.mode") if "mode" in m else None
    min_uid = _int(m["min_uid"], err, "defaults.min_uid", 1) if "min_uid" in m else None
    deadline = _seconds(m["deadline"], err, "defaults.deadline") if "deadline" in m else None
    socket = _socket(m["socket"], err, "defaults.socket") if "socket" in m else None
    proxy = _proxy(m["proxy"], err, "defaults.proxy") if "proxy" in m else None
    return Defaults(
        mode=mode or Mode.LOCAL_FIRST,
        min_uid=min_uid or DEFAULT_MIN_UID,
        deadline=deadline,
        socket=socket,
        proxy=proxy or ProxyKind.IMPERSONATE,
    )


def _match(n: Node, err: _Errors, what: str) -> Match:
    keys = {"servers", "realm", "users", "uids", "groups"}
    m = _mapping(n, err, what, keys) or {}
    if not m:
        err.at(n, f"{what}: an empty match would match everything; leave it to defaults")
    return Match(
        servers=_list(m["servers"], err, f"{what}.servers", _str) if "servers" in m else (),
        realms=_list(m["realm"], err, f"{what}.realm", _str) if "realm" in m else (),
        users=_list(m["users"], err, f"{what}.users", _str) if "users" in m else (),
        uids=_list(m["uids"], err, f"{what}.uids", _uids) if "uids" in m else (),
        groups=_list(m["groups"], err, f"{what}.groups", _str) if "groups" in m else (),
    )


def _principal_map(n: Node, err: _Errors) -> dict[str, str]:
    """login name (or uid, for accounts without one) -> principal."""
    if not isinstance(n, MappingNode):
        err.at(n, "principal_map must be a mapping")
        return {}
    out: dict[str, str] = {}
    for kn, vn in n.value:
        name = _scalar(kn, err, "principal_map key")
        principal = _principal(vn, err, f"principal_map[{name}]")
        if name in out:
            err.at(kn, f"principal_map: duplicate key {name!r}")
        elif name is not None and principal is not None:
            out[name] = principal
    return out


def _rules(n: Node, err: _Errors, path: str) -> tuple[Rule, ...]:
    if not isinstance(n, SequenceNode):
        err.at(n, "rules must be a list")
        return ()
    out: list[Rule] = []
    for i, rn in enumerate(n.value, 1):
        what = f"rules[{i}]"
        m = _mapping(rn, err, what, {"match", "mode", "socket", "proxy"})
        if m is None:
            continue
        if "match" not in m or "mode" not in m:
            err.at(rn, f"{what} needs 'match' and 'mode'")
            continue
        mode = _mode(m["mode"], err, f"{what}.mode")
        socket = _socket(m["socket"], err, f"{what}.socket") if "socket" in m else None
        proxy = _proxy(m["proxy"], err, f"{what}.proxy") if "proxy" in m else None
        match = _match(m["match"], err, f"{what}.match")
        if mode is None:
            continue
        out.append(Rule(match, mode, socket, f"{path}:{rn.start_mark.line + 1}", proxy))
    return tuple(out)


def socket_identity(path: str) -> object:
    """What makes two socket spellings one socket: `/a//b.sock`, `/a/./b.sock` and a path
    through a symlinked directory are the same gssproxy service. The socket's inode when it
    exists, else its directory's inode and its name, else the resolved path."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        pass
    directory, name = os.path.split(os.path.realpath(path))
    try:
        st = os.stat(directory)
        return ("dir", st.st_dev, st.st_ino, name)
    except OSError:
        return ("path", os.path.join(directory, name))


def _one_kind_per_socket(defaults: Defaults, rules: tuple[Rule, ...], err: _Errors) -> None:
    """A socket is served by one gssproxy service, which either impersonates or does not: a
    policy that says both about one path is wrong somewhere (and an own-keytab rule aimed at
    an impersonating service would let deny-listed users be impersonated)."""
    kinds: dict[object, tuple[ProxyKind, str]] = {}
    if defaults.socket is not None:
        kinds[socket_identity(defaults.socket)] = (defaults.proxy, "defaults")
    for i, r in enumerate(rules, 1):
        socket, kind = r.socket or defaults.socket, r.proxy or defaults.proxy
        if socket is None:
            continue
        seen = kinds.setdefault(socket_identity(socket), (kind, f"rules[{i}] ({r.where})"))
        if seen[0] is not kind:
            err.items.append(
                f"{r.where}: rules[{i}]: socket {socket} is proxy: {kind.value} here but "
                f"{seen[0].value} in {seen[1]}; one socket is one gssproxy service"
            )


def parse(text: str, path: str) -> Policy:
    """Parse policy text; BadPolicy lists every problem with file:line."""
    err = _Errors(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise BadPolicy(f"{path}{line}: YAML syntax: {getattr(e, 'problem', e)}") from None
    if root is None:
        raise BadPolicy(f"{path}: empty policy file")
    keys = {"version", "defaults", "deny_users", "deny_groups", "principal_map", "rules"}
    top = _mapping(root, err, "policy", keys)
    if top is None:
        raise BadPolicy("; ".join(err.items))
    if "version" not in top:
        err.at(root, "'version: 1' is required")
    elif _int(top["version"], err, "version", 1) not in (VERSION, None):
        err.at(top["version"], f"unsupported version (this helper reads version {VERSION})")
    defaults = _defaults(top["defaults"], err) if "defaults" in top else Defaults()
    deny = _list(top["deny_users"], err, "deny_users", _str) if "deny_users" in top else ()
    deny_groups = (
        _list(top["deny_groups"], err, "deny_groups", _str) if "deny_groups" in top else ()
    )
    pmap = _principal_map(top["principal_map"], err) if "principal_map" in top else {}
    rules = _rules(top["rules"], err, path) if "rules" in top else ()
    _one_kind_per_socket(defaults, rules, err)
    if err.items:
        raise BadPolicy("; ".join(err.items))
    return Policy(
        defaults, frozenset(deny), pmap, rules, origin=path, deny_groups=frozenset(deny_groups)
    )
