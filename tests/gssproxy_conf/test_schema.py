"""Input validation: every bad input names file:line and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from gssproxy_conf import cli, schema
from gssproxy_conf.errors import Code, ConfigError
from gssproxy_conf.model import Delegation, KdcFlavor, Mode

GOOD = """\
realm: EXAMPLE.COM
client: {principal: "FS-CLIENT1$", keytab: /etc/krb5.keytab}
smb:
  servers: [fs1.example.com]
"""


def problems(text: str) -> list[tuple[int, Code, str]]:
    with pytest.raises(ConfigError) as ei:
        schema.load(text, "in.yaml")
    out = []
    for p in ei.value.problems:
        assert p.location is not None and p.location.path == "in.yaml"
        out.append((p.location.line, p.code, p.message))
    return out


def test_example_from_issue_loads(example) -> None:
    assert example.realm == "EXAMPLE.COM"
    assert example.client.account == "FS-CLIENT1$"
    assert example.client_principal == "FS-CLIENT1$@EXAMPLE.COM"
    assert example.delegation is Delegation.PROTOCOL_TRANSITION
    assert example.smb.servers == ("fs1.example.com", "fs2.example.com")
    assert example.smb.policy is Mode.LOCAL_FIRST
    assert example.nfs is not None and example.nfs.impersonate is False
    assert example.protected_users[0].uid == 31337
    assert example.local_users[0].principal == "aduser@EXAMPLE.COM"
    assert example.automount is not None
    assert example.automount.shares == (("projects", "//fs1.example.com/projects"),)


def test_full_variant_loads(rbcd_example) -> None:
    c = rbcd_example
    assert c.delegation is Delegation.RBCD and c.ad.kdc is KdcFlavor.SAMBA
    assert c.server_account("files.dept.example.com") == "FILESRV7$"
    assert c.server_account("fs1.example.com") == "FS1$"
    assert (
        str(c.protected_socket(c.protected_users[0]))
        == "/run/gssproxy/cifs/protected-svc-backup.sock"
    )
    assert c.protected_principal(c.protected_users[0]) == "backup@EXAMPLE.COM"
    assert c.auth_to_local_names and c.deny_groups == ("protected users", "no-impersonation")


def test_yaml_syntax_error_has_line() -> None:
    [(line, code, _)] = problems(GOOD + "nfs: {impersonate: true\n")
    assert code is Code.YAML_SYNTAX and line == 6


def test_unknown_key_with_suggestion() -> None:
    [(line, code, msg)] = problems(GOOD + "  impersonat: true\n")
    assert (line, code) == (5, Code.UNKNOWN_KEY)
    assert "did you mean 'impersonate'" in msg


def test_relative_keytab() -> None:
    [(line, code, msg)] = problems(GOOD.replace("/etc/krb5.keytab", "etc/krb5.keytab"))
    assert (line, code) == (2, Code.BAD_VALUE)
    assert "relative" in msg and "client.keytab" in msg


@pytest.mark.parametrize("uid", ['"101"', "abc", "1.5", "true", "-1"])
def test_uid_not_a_number(uid: str) -> None:
    text = GOOD + f"local_users:\n  - {{name: labuser, uid: {uid}, principal: a@EXAMPLE.COM}}\n"
    [(line, code, msg)] = problems(text)
    assert line == 6 and "local_users[0].uid" in msg
    assert code in (Code.BAD_TYPE, Code.BAD_VALUE)


@pytest.mark.parametrize(
    "host",
    [
        "fs1",
        "10.1.2.3",
        "FS1.example.com",
        "fs_1.example.com",
        "-fs.example.com",
        "fs1.example.com/share",
        '""',
    ],
)
def test_server_not_a_host(host: str) -> None:
    text = GOOD.replace("[fs1.example.com]", f"[fs0.example.com, {host}]")
    [(line, code, msg)] = problems(text)
    assert (line, code) == (4, Code.BAD_VALUE)
    assert "smb.servers" in msg


def test_all_problems_reported_in_line_order() -> None:
    text = (
        "realm: example.com\n"
        "client: {principal: x, keytab: kt}\n"
        "smb: {servers: [fs1], sockett: /x}\n"
        "delegation: kcd\n"
    )
    got = problems(text)
    assert [line for line, _, _ in got] == sorted(line for line, _, _ in got)
    assert {line for line, _, _ in got} == {1, 2, 3, 4}
    assert len(got) == 5


def test_duplicate_key_is_an_error() -> None:
    [(line, code, msg)] = problems(GOOD + "realm: OTHER.COM\n")
    assert (line, code) == (5, Code.YAML_SYNTAX) and "duplicate" in msg


def test_missing_required() -> None:
    got = problems("realm: EXAMPLE.COM\n")
    assert {c for _, c, _ in got} == {Code.MISSING_KEY}
    assert any("client" in m for _, _, m in got) and any("smb" in m for _, _, m in got)


def test_helper_args_checked_by_the_helpers_parser() -> None:
    [(line, code, msg)] = problems(GOOD + "helper: {args: [--verbose]}\n")
    assert (line, code) == (5, Code.BAD_VALUE)
    assert "unrecognized arguments: --verbose" in msg
    [(_, code, msg)] = problems(GOOD + "helper: {args: [--deadline, soon]}\n")
    assert code is Code.BAD_VALUE and "--deadline" in msg
    ok = schema.load(GOOD + "helper: {args: [--deadline, '5', -d]}\n")
    assert ok.helper.args == ("--deadline", "5", "-d")


def test_deny_groups_default_and_auth_to_local_opt_in() -> None:
    c = schema.load(GOOD)
    assert c.deny_groups == ("Protected Users", "protected users") and not c.auth_to_local_names
    assert schema.load(GOOD + "ad: {kdc: windows}\n").deny_groups == ()
    assert schema.load(GOOD + "deny_groups: []\n").deny_groups == ()


def test_old_ad_keys_are_ignored_with_a_warning() -> None:
    from gssproxy_conf.errors import Problem

    warnings: list[Problem] = []
    schema.load(GOOD + "ad: {account_uac: {'X$': 4096}}\n", "w.yaml", warnings)
    [w] = warnings
    assert w.code is Code.DEPRECATED and "account_uac" in w.message


def test_share_host_must_be_a_configured_server() -> None:
    text = (
        GOOD + "automount: {map: /etc/auto.smb, mountpoint: /smb,\n"
        "  shares: {x: //fs9.example.com/x}}\n"
    )
    [(line, code, msg)] = problems(text)
    assert (line, code) == (6, Code.CONFLICT) and "fs9.example.com" in msg


def test_socket_rules() -> None:
    long = "/run/" + "x" * 110 + ".sock"
    [(line, _, msg)] = problems(GOOD + f"  socket: {long}\n")
    assert line == 5 and "truncates" in msg
    [(line, _, msg)] = problems(GOOD + "  socket: /run/cifs.sock\n")
    assert line == 5 and "dedicated directory" in msg
    text = GOOD + "nfs: {enable: true, socket: /run/gssproxy/cifs/nfs.sock}\n"
    [(line, code, msg)] = problems(text)
    assert code is Code.CONFLICT and "another directory" in msg


def test_protected_users_cannot_share_a_socket() -> None:
    """gssproxy refuses two services on one socket that match the same callers (GP006)."""
    text = GOOD + (
        "protected_users:\n"
        "  - {name: b, uid: 5000, keytab: /k, socket: /run/gp/prot/0.sock}\n"
        "  - {name: c, uid: 5001, keytab: /k, socket: /run/gp/prot/0.sock}\n"
    )
    [(line, code, msg)] = problems(text)
    assert (line, code) == (7, Code.CONFLICT) and "socket of its own" in msg


def test_same_user_twice_and_root() -> None:
    text = GOOD + (
        "protected_users:\n  - {name: a, uid: 5000, keytab: /k}\n"
        "local_users:\n  - {name: a, uid: 5001, principal: a@EXAMPLE.COM}\n"
        "  - {name: root, uid: 0, principal: r@EXAMPLE.COM}\n"
    )
    got = problems(text)
    assert [(line, code) for line, code, _ in got] == [(8, Code.CONFLICT), (9, Code.BAD_VALUE)]


def test_proxy_policy_needs_impersonation() -> None:
    [(line, code, _)] = problems(GOOD + "  impersonate: false\n  policy: proxy-only\n")
    assert (line, code) == (6, Code.CONFLICT)


def test_empty_and_non_mapping() -> None:
    assert problems("")[0][1] is Code.MISSING_KEY
    assert problems("- a\n- b\n")[0][1] is Code.BAD_TYPE


def test_cli_bad_input_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "site.yaml"
    src.write_text(GOOD.replace("/etc/krb5.keytab", "krb5.keytab"))
    out = tmp_path / "out"
    assert cli.main(["generate", str(src), "-o", str(out)]) == cli.EXIT_INPUT
    assert cli.main(["apply", str(src), "--root", str(out)]) == cli.EXIT_INPUT
    err = capsys.readouterr().err
    assert f"{src}:2:" in err and "relative" in err and "nothing was written" in err
    assert not out.exists()


def test_local_user_below_min_uid_is_a_warning_with_file_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The helper never impersonates below min_uid (a hard limit): say so, and what to change."""
    text = GOOD + (
        "local_users:\n"
        "  - {name: labuser, uid: 1101, principal: a@EXAMPLE.COM}\n"
        "  - {name: oldsys, uid: 101, principal: b@EXAMPLE.COM}\n"
    )
    warnings: list[schema.Problem] = []
    c = schema.load(text, "in.yaml", warnings)
    assert [u.uid for u in c.local_users] == [1101, 101]  # still rendered (name mapping)
    [w] = warnings
    assert w.code is Code.BELOW_MIN_UID and str(w.location).startswith("in.yaml:7:")
    assert "uid 101) is below smb.min_uid 1000" in w.message
    assert "set smb.min_uid: 101" in w.message and "protected_users" in w.message
    src = tmp_path / "in.yaml"
    src.write_text(text)
    assert cli.main(["generate", str(src)]) == cli.EXIT_OK
    err = capsys.readouterr().err
    assert f"warning: {src}:7:" in err and "W-MIN-UID" in err
    # lowered floor, or no impersonation at all: nothing to warn about
    for fix in ("smb:\n  min_uid: 101\n  servers:", "smb:\n  impersonate: false\n  servers:"):
        warnings.clear()
        schema.load(text.replace("smb:\n  servers:", fix), "in.yaml", warnings)
        assert warnings == []


@pytest.mark.parametrize("name", ["O'Brien", "a,b", " lead", ""])
def test_bad_group_names(name: str) -> None:
    [(_, code, msg)] = problems(GOOD + f'ad: {{rbcd_group: "{name}"}}\n')
    assert code is Code.BAD_VALUE and "group name" in msg
