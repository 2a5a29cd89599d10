"""check: each trap is found in a configuration that has it; the generated one is clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from gssproxy_conf import cli, plan
from gssproxy_conf.apply import apply
from gssproxy_conf.check import Rule, Severity, lint, lint_paths

MAIN = ("gssproxy.conf", "[gssproxy]\n")
GOOD_SVC = """\
[service/ok]
  mechs = krb5
  euid = 0
  socket = /run/gssproxy/x/x.sock
  cred_store = keytab:/etc/krb5.keytab
"""


def rules(
    snippets: dict[str, str], main: tuple[str, str] | None = MAIN
) -> list[tuple[Rule, str, int]]:
    return [(f.rule, f.file, f.line) for f in lint(main, list(snippets.items()))]


def test_clean_baseline() -> None:
    assert rules({"50-ok.conf": GOOD_SVC}) == []


def test_section_repeated_across_files_is_dropped() -> None:
    got = lint(MAIN, [("50-a.conf", GOOD_SVC), ("60-b.conf", "# again\n" + GOOD_SVC)])
    [f] = got
    assert (f.rule, f.severity, f.file, f.line) == (
        Rule.DUPLICATE_SECTION,
        Severity.ERROR,
        "60-b.conf",
        2,
    )
    assert "dropped" in f.message and "50-a.conf" in f.message


def test_globals_in_snippet_ignored() -> None:
    assert rules({"50-g.conf": "[gssproxy]\n  debug_level = 3\n"}) == [
        (Rule.DUPLICATE_SECTION, "50-g.conf", 1)
    ]  # the main file already has [gssproxy]
    assert rules({"50-g.conf": "[gssproxy]\n  debug_level = 3\n"}, main=None) == [
        (Rule.GLOBALS_IN_SNIPPET, "50-g.conf", 1)
    ]


@pytest.mark.parametrize("mechs", ["krb5, spnego", "KRB5", "krb5 # the only one"])
def test_mechs_must_be_exactly_krb5(mechs: str) -> None:
    got = rules({"50-a.conf": GOOD_SVC.replace("mechs = krb5", f"mechs = {mechs}")})
    assert (Rule.MECHS, "50-a.conf", 2) in got


def test_program_for_python_client() -> None:
    got = rules({"50-a.conf": GOOD_SVC + "  program = /usr/bin/python3.11\n"})
    assert got == [(Rule.PROGRAM, "50-a.conf", 6)]


def test_impersonate_breaks_callers_without_name() -> None:
    got = rules({"50-a.conf": GOOD_SVC + "  impersonate = yes\n"})
    assert got == [(Rule.IMPERSONATE_NO_NAME, "50-a.conf", 6)]
    # krb5_principal gives nameless callers a name: fine
    assert rules({"50-a.conf": GOOD_SVC + "  impersonate = yes\n  krb5_principal = H$@R\n"}) == []


def test_nfs_and_smb_sharing_one_service() -> None:
    # Debian's example client service plus an SMB impersonation service, both on the default
    # socket: gssproxy refuses it, and SMB impersonation sits where rpc.gssd connects
    nfs = (
        "[service/network-fs-clients]\n  mechs = krb5\n  euid = 0\n  allow_any_uid = yes\n"
        "  trusted = yes\n  cred_store = keytab:/etc/krb5.keytab\n"
    )
    smb = (
        "[service/smb]\n  mechs = krb5\n  euid = 0\n  impersonate = yes\n"
        "  krb5_principal = C$@R\n  cred_store = keytab:/etc/krb5.keytab\n"
    )
    got = lint(MAIN, [("99-network-fs-clients.conf", nfs), ("50-smb.conf", smb)])
    assert {(f.rule, f.severity, f.file) for f in got} == {
        (Rule.SHARED_SOCKET, Severity.WARNING, "50-smb.conf"),
        (Rule.SHARED_SOCKET, Severity.ERROR, "99-network-fs-clients.conf"),
    }
    assert any("own socket" in f.fix for f in got)


def test_smaller_traps() -> None:
    svc = GOOD_SVC + (
        "  trusted = enabled\n"  # 6: not a boolean
        "  cred_store = ccache:FILE:/var/lib/gssproxy/clients/krb5cc_%d\n"  # 7: bad %
        "  cred_store = krb5_keytab:/etc/krb5.keytab\n"  # 8: legacy
        "  filter_flags = +INTEGRITY\n"  # 9: misspelt flag
        "  cred_usage = initiator\n"  # 10
        "  imperonate = yes\n"  # 11: typo
        "  krb5_principal = H$@R # machine\n"  # 12: trailing comment
    )
    got = set(rules({"50-a.conf": svc, "zz.conf": GOOD_SVC, "50-b.conf": "[service/b]\n"}))
    assert got == {
        (Rule.NOT_A_BOOLEAN, "50-a.conf", 6),
        (Rule.SUBSTITUTION, "50-a.conf", 7),
        (Rule.LEGACY_CRED_STORE, "50-a.conf", 8),
        (Rule.FLAG_NAME, "50-a.conf", 9),
        (Rule.CRED_USAGE, "50-a.conf", 10),
        (Rule.UNKNOWN_OPTION, "50-a.conf", 11),
        (Rule.TRAILING_COMMENT, "50-a.conf", 12),
        (Rule.IGNORED_FILE, "zz.conf", 1),
        (Rule.MISSING_EUID, "50-b.conf", 1),
        (Rule.MECHS, "50-b.conf", 1),
    }


def test_generated_configuration_is_clean(example, rbcd_example, tmp_path: Path) -> None:
    for c in (example, rbcd_example):
        root = tmp_path / c.delegation.value
        apply(plan.build(c), root)
        gp = root / "etc/gssproxy"
        (gp / "gssproxy.conf").write_text("[gssproxy]\n")
        assert lint_paths(gp, gp / "gssproxy.conf") == []


def test_debian_shipped_configuration_is_clean() -> None:
    d = Path("/etc/gssproxy")
    if not (d / "24-nfs-server.conf").exists():
        pytest.skip("Debian's gssproxy configuration is not installed")
    assert lint_paths(d, d / "gssproxy.conf") == []


def test_cli_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "gssproxy.conf").write_text("[gssproxy]\n")
    (tmp_path / "50-a.conf").write_text(GOOD_SVC.replace("krb5", "krb5, x", 1))
    assert cli.main(["check", str(tmp_path)]) == cli.EXIT_DIFF
    out = capsys.readouterr().out
    assert f"{tmp_path}/50-a.conf:2: error GP003" in out and "fix: write exactly" in out
    (tmp_path / "50-a.conf").write_text(GOOD_SVC)
    assert cli.main(["check", str(tmp_path)]) == cli.EXIT_OK
