"""Loading the policy file: trust checks, strict schema with file:line, fail-closed defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from upcall.errors import BadPolicy, Reason
from upcall.policy import file as policy_file
from upcall.policy.rules import (
    Mode,
    ProxyKind,
    ServerFacts,
    Step,
    UidRange,
    UserFacts,
    decide,
)

GOLDEN = Path(__file__).parents[1] / "gssproxy_conf" / "golden"

GOOD = """\
# comment
version: 1
defaults: {mode: local-first, min_uid: 2000, deadline: 4.5, socket: /run/gp/cifs.sock}
deny_users: [root, dave]
principal_map: {labuser: aduser@EXAMPLE.COM}
rules:
  - match: {servers: ["*.corp.example.com"], uids: [2000-2999, '31337', 4000]}
    mode: proxy-only
    socket: /run/gp/corp.sock
  - match: {realm: EXAMPLE.COM, groups: [batch]}
    mode: proxy-first
"""


@pytest.fixture
def root_dir(tmp_path: Path) -> Path:
    """A root-owned 0755 directory chain (pytest's tmp dirs are root's, 0700)."""
    if os.geteuid() != 0:
        pytest.skip("ownership checks need files owned by root")
    d = tmp_path / "etc"
    d.mkdir(mode=0o755)
    return d


def _write(d: Path, text: str, mode: int = 0o644) -> Path:
    p = d / "policy.yaml"
    p.write_text(text)
    p.chmod(mode)
    return p


def test_good_file(root_dir: Path) -> None:
    p = policy_file.load(str(_write(root_dir, GOOD)))
    assert p.defaults.min_uid == 2000 and p.defaults.deadline == 4.5
    assert p.deny_users == {"root", "dave"}
    r1, r2 = p.rules
    assert r1.match.uids == (UidRange(2000, 2999), UidRange(31337, 31337), UidRange(4000, 4000))
    assert r1.where.endswith("policy.yaml:7") and r2.where.endswith("policy.yaml:10")
    assert r2.socket is None and r2.mode is Mode.PROXY_FIRST
    d = decide(p, ServerFacts("x.corp.example.com"), UserFacts(2500, "eve"), "EXAMPLE.COM")
    assert d.steps == (Step.PROXY,) and d.socket == "/run/gp/corp.sock"


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("version: 1\nrules:\n  - match: {servers: [a]\n    mode: x\n", 4, "YAML syntax"),
        ("version: 1\ndefaults:\n  mode: local-first\n  sokcet: /x\n", 4, "unknown key 'sokcet'"),
        ("version: 1\nfoo: 1\n", 2, "unknown key 'foo'"),
        ("version: 1\ndefaults: {mode: sometimes}\n", 2, "must be one of local-only"),
        ("version: 1\ndefaults:\n  min_uid: '1000'\n", 3, "integer >= 1"),
        ("version: 1\ndefaults:\n  min_uid: 0\n", 3, "integer >= 1"),
        ("version: 2\n", 1, "unsupported version"),
        ("defaults: {}\n", 1, "'version: 1' is required"),
        ("version: 1\nversion: 1\n", 2, "duplicate key"),
        ("version: 1\nrules:\n  - match: {users: [a]}\n", 3, "needs 'match' and 'mode'"),
        ("version: 1\nrules:\n- mode: local-only\n  match: {}\n", 4, "empty match"),
        (
            "version: 1\nrules:\n- mode: proxy-only\n  socket: rel.sock\n  match: {users: [a]}\n",
            4,
            "absolute path",
        ),
        ("version: 1\nrules:\n- mode: local-only\n  match: {uids: [10-5]}\n", 4, "empty range"),
        ("version: 1\nrules:\n- mode: local-only\n  match: {uids: [ten]}\n", 4, "neither a uid"),
        ("version: 1\nprincipal_map:\n  a: not a principal\n", 3, "not a principal name"),
        ("version: 1\ndefaults: {deadline: 0}\n", 2, "seconds"),
        ("version: 1\ndefaults: {proxy: s4u}\n", 2, "must be one of impersonate, own-keytab"),
        (
            "version: 1\nrules:\n- mode: proxy-only\n  proxy: own_keytab\n  match: {users: [a]}\n",
            4,
            "rules[1].proxy must be one of impersonate, own-keytab, got 'own_keytab'",
        ),
        (
            "version: 1\nrules:\n- mode: proxy-only\n  proxy: [own-keytab]\n  match: {uids: 1}\n",
            4,
            "single value",
        ),
        (
            "version: 1\ndefaults: {socket: /s/imp.sock}\nrules:\n"
            "- {mode: proxy-only, proxy: own-keytab, match: {users: [a]}}\n",
            4,
            "socket /s/imp.sock is proxy: own-keytab here but impersonate in defaults",
        ),
        (
            "version: 1\nrules:\n- {mode: local-first, socket: /s/a, match: {users: [a]}}\n"
            "- {mode: local-first, socket: /s/a, proxy: own-keytab, match: {users: [b]}}\n",
            4,
            "but impersonate in rules[1]",
        ),
        ("", None, "empty policy file"),
    ],
)
def test_errors_name_file_and_line(root_dir: Path, text: str, line: int | None, what: str) -> None:
    path = _write(root_dir, text)
    with pytest.raises(BadPolicy) as ei:
        policy_file.load(str(path))
    msg = ei.value.message
    assert what in msg
    assert msg.startswith(f"{path}:{line}:" if line else f"{path}:")
    assert ei.value.reason is Reason.BAD_POLICY


def test_proxy_kind_per_rule_and_defaults(root_dir: Path) -> None:
    text = (
        "version: 1\n"
        "defaults: {mode: local-first, socket: /s/imp.sock}\n"
        "deny_users: [root, svc-backup]\n"
        "rules:\n"
        "  - match: {users: [svc-backup]}\n"
        "    mode: proxy-first\n"
        "    socket: /s/own.sock\n"
        "    proxy: own-keytab\n"
        "  - match: {users: [alice]}\n"
        "    mode: proxy-only\n"
        "    proxy: impersonate\n"
    )
    p = policy_file.load(str(_write(root_dir, text)))
    assert p.defaults.proxy is ProxyKind.IMPERSONATE
    own, imp = p.rules
    assert own.proxy is ProxyKind.OWN_KEYTAB and imp.proxy is ProxyKind.IMPERSONATE
    fs = ServerFacts("fs1")
    d = decide(p, fs, UserFacts(31337, "svc-backup"), "EXAMPLE.COM")
    assert d.steps == (Step.PROXY_KEYTAB, Step.LOCAL) and d.socket == "/s/own.sock"
    d = decide(p, fs, UserFacts(1500, "alice"), "EXAMPLE.COM")
    assert d.steps == (Step.PROXY,) and d.socket == "/s/imp.sock"
    own_defaults = "version: 1\ndefaults: {socket: /s/own.sock, proxy: own-keytab}\n"
    p = policy_file.load(str(_write(root_dir, own_defaults)))
    assert p.defaults.proxy is ProxyKind.OWN_KEYTAB


def test_all_errors_at_once(root_dir: Path) -> None:
    path = _write(root_dir, "version: 1\nfoo: 1\ndefaults: {mode: x, bar: 2}\n")
    with pytest.raises(BadPolicy) as ei:
        policy_file.load(str(path))
    assert ei.value.message.count(str(path)) == 3


@pytest.mark.parametrize("mode", [0o666, 0o646, 0o664])
def test_writable_file_is_refused(root_dir: Path, mode: int) -> None:
    path = _write(root_dir, GOOD, mode)
    with pytest.raises(BadPolicy, match="group- or world-writable"):
        policy_file.load(str(path))


def test_writable_parent_dir_is_refused(root_dir: Path) -> None:
    path = _write(root_dir, GOOD)
    root_dir.chmod(0o775)
    with pytest.raises(BadPolicy, match=f"{root_dir} is group- or world-writable"):
        policy_file.load(str(path))
    root_dir.chmod(0o1777)  # sticky: others cannot replace root's file in it
    assert policy_file.load(str(path)).rules


def test_file_or_dir_not_owned_by_root_is_refused(root_dir: Path) -> None:
    path = _write(root_dir, GOOD)
    os.chown(path, 23001, 0)
    with pytest.raises(BadPolicy, match="owned by uid 23001"):
        policy_file.load(str(path))
    os.chown(path, 0, 0)
    os.chown(root_dir, 23001, 0)
    with pytest.raises(BadPolicy, match="owned by uid 23001"):
        policy_file.load(str(path))


def test_symlink_target_is_checked_too(root_dir: Path, tmp_path: Path) -> None:
    user_dir = tmp_path / "user"
    user_dir.mkdir(mode=0o755)
    target = _write(user_dir, GOOD)
    os.chown(user_dir, 23001, 0)
    (root_dir / "link.yaml").symlink_to(target)
    with pytest.raises(BadPolicy, match="owned by uid 23001"):
        policy_file.load(str(root_dir / "link.yaml"))


def test_missing_default_file_means_no_impersonation(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(policy_file, "DEFAULT_PATH", str(tmp_path / "absent.yaml"))
    p = policy_file.load(None)
    assert p.rules == () and p.defaults.socket is None
    d = decide(p, ServerFacts("fs1"), UserFacts(1500, "alice"), "EXAMPLE.COM")
    assert d.steps == (Step.LOCAL,)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BadPolicy, match="no such policy file"):
        policy_file.load(str(tmp_path / "absent.yaml"))


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*/etc__cifs-upcall__*policy.yaml")))
def test_accepts_what_gssproxy_conf_renders(golden: Path) -> None:
    p = policy_file.parse(golden.read_text(), str(golden))
    assert p.rules and "root" in p.deny_users
    protected = [r for r in p.rules if r.proxy is ProxyKind.OWN_KEYTAB]
    assert protected
    # protected users are deny-listed, yet their own rule sends them to their own-keytab
    # socket; no impersonating rule ever reaches them
    for rule in protected:
        [name] = rule.match.users
        assert name in p.deny_users
        server = ServerFacts(rule.match.servers[0], rule.match.realms[0])
        user = UserFacts(rule.match.uids[0].first, name)
        d = decide(p, server, user, "EXAMPLE.COM")
        assert set(d.steps) == {Step.LOCAL, Step.PROXY_KEYTAB} and d.socket == rule.socket
        assert d.principal == f"{name}@EXAMPLE.COM"
        impersonating = policy_file.parse(
            golden.read_text().replace("proxy: own-keytab", "proxy: impersonate"), str(golden)
        )
        d = decide(impersonating, server, user, "EXAMPLE.COM")
        assert d.steps == (Step.LOCAL,) and d.no_proxy == f"{name} is in deny_users"


def test_deny_groups_parsed_and_strict(root_dir: Path) -> None:
    p = policy_file.load(str(_write(root_dir, 'version: 1\ndeny_groups: ["protected users"]\n')))
    assert p.deny_groups == frozenset({"protected users"}) and p.needs_groups
    with pytest.raises(BadPolicy) as e:
        policy_file.load(str(_write(root_dir, "version: 1\ndeny_groups: {a: b}\n")))
    assert ":2:" in str(e.value) and "deny_groups" in str(e.value)
