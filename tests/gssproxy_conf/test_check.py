"""check: each trap is found in a configuration that has it; the generated one is clean."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gssproxy_conf import cli, schema
from gssproxy_conf.install import plan
from gssproxy_conf.install.apply import apply
from gssproxy_conf.lint.check import Rule, Severity, lint, lint_paths

from .conftest import DATA

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


def test_native_program_is_a_warning_and_exit_0_unless_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "gssproxy.conf").write_text("[gssproxy]\n")
    (tmp_path / "50-a.conf").write_text(GOOD_SVC + "  program = /usr/sbin/rpc.gssd\n")
    [f] = lint(MAIN, [("50-a.conf", (tmp_path / "50-a.conf").read_text())])
    assert (f.rule, f.severity) == (Rule.PROGRAM, Severity.WARNING)
    assert "interpreter" not in f.message and "realpath" in f.message
    assert cli.main(["check", str(tmp_path)]) == cli.EXIT_OK
    assert cli.main(["check", str(tmp_path), "--strict"]) == cli.EXIT_DIFF
    assert "0 error(s), 1 warning(s)" in capsys.readouterr().err


def _keytab(path: Path, *principals: str) -> Path:
    """A real MIT keytab, entries in this order. ktutil reads passwords from a terminal only,
    hence script(1) and a pause before each answer."""
    steps = "".join(
        f"printf '%s\\n' 'addent -password -p {p} -k 3 -e aes256-cts-hmac-sha1-96'; sleep 0.3; "
        "printf 'pw\\n'; sleep 0.3; "
        for p in principals
    )
    script = f"({steps}printf 'wkt {path}\\nquit\\n') | script -qc ktutil /dev/null"
    subprocess.run(["sh", "-c", script], check=True, capture_output=True, timeout=30)
    assert path.exists()
    return path


@pytest.mark.skipif(not shutil.which("ktutil") or not shutil.which("script"), reason="no ktutil")
def test_keytab_first_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from upcall.krb5.keytab import read_first_entry

    good = _keytab(
        tmp_path / "good.keytab", "FS-CLIENT1$@EXAMPLE.COM", "host/fs-client1@EXAMPLE.COM"
    )
    bad = _keytab(tmp_path / "bad.keytab", "host/fs-client1@EXAMPLE.COM", "FS-CLIENT1$@EXAMPLE.COM")
    first = read_first_entry(str(good))
    assert (first.principal, first.kvno, first.enctype) == ("FS-CLIENT1$@EXAMPLE.COM", 3, 18)
    assert read_first_entry(str(bad)).principal == "host/fs-client1@EXAMPLE.COM"
    # the generated SMB service names the principal it expects (krb5_principal)
    text = (DATA / "example.yaml").read_text()
    root = tmp_path / "root"
    for kt in (good, bad):
        c = schema.load(text.replace("/etc/krb5.keytab", str(kt)))
        apply(plan.build(c), root, force_edited=True)
        rc = cli.main(["check", str(root / "etc/gssproxy"), "--keytab", str(kt)])
        out = capsys.readouterr().out
        if kt is good:
            assert rc == cli.EXIT_OK, out
        else:
            assert rc == cli.EXIT_DIFF and "GP018" in out, out
            assert (
                "the first entry is host/fs-client1@EXAMPLE.COM, not FS-CLIENT1$@EXAMPLE.COM" in out
            )
    assert cli.main(["check", str(root / "etc/gssproxy"), "--keytab", str(good),
                     "--principal", "other$@EXAMPLE.COM"]) == cli.EXIT_DIFF  # fmt: skip
    (tmp_path / "junk").write_bytes(b"\x05\x02")
    assert cli.main(["check", str(root / "etc/gssproxy"), "--keytab", str(tmp_path / "junk"),
                     "--principal", "x@Y"]) == cli.EXIT_DIFF  # fmt: skip


@pytest.mark.skipif(not shutil.which("ktutil") or not shutil.which("script"), reason="no ktutil")
def test_apply_warns_about_the_keytab(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    _keytab(root / "etc/krb5.keytab", "host/fs-client1@EXAMPLE.COM", "FS-CLIENT1$@EXAMPLE.COM")
    assert cli.main(["apply", str(DATA / "example.yaml"), "--root", str(root)]) == cli.EXIT_OK
    err = capsys.readouterr().err
    assert "warning: " in err and "GP018" in err and "host/fs-client1@EXAMPLE.COM" in err
