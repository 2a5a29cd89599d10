"""gssproxy-conf ad: one client or a fleet, LDIF only against an export, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gssproxy_conf import cli

from .conftest import DATA

EXAMPLE = str(DATA / "example.yaml")


def _client(tmp_path: Path, name: str, realm: str = "EXAMPLE.COM") -> str:
    p = tmp_path / f"{name}.yaml"
    p.write_text(
        f"realm: {realm}\n"
        f"client: {{principal: '{name}$', keytab: /etc/krb5.keytab}}\n"
        "delegation: rbcd\n"
        "smb: {servers: [fs1.example.com, fs2.example.com]}\n"
    )
    return str(p)


def test_ldif_needs_the_current_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ad", EXAMPLE, "--format", "ldif"]) == cli.EXIT_INPUT
    err = capsys.readouterr().err
    assert "--current EXPORT" in err and "ldbsearch -H /var/lib/samba/private/sam.ldb" in err
    assert cli.main(["ad", EXAMPLE, "--export-command"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "(|(sAMAccountName=FS-CLIENT1$)(sAMAccountName=svc-backup))" in out
    current = str(DATA / "example.current.ldif")
    assert cli.main(["ad", EXAMPLE, "--format", "ldif", "--current", current]) == cli.EXIT_OK
    out = capsys.readouterr().out
    # 69632 (adcli) keeps DONT_EXPIRE_PASSWD; fs2 was already there, only fs1 is added
    assert "userAccountControl: 16846848" in out and "userAccountControl: 1114624" in out
    assert "msDS-AllowedToDelegateTo: cifs/fs1.example.com" in out
    assert "msDS-AllowedToDelegateTo: cifs/fs2.example.com" not in out


def test_export_missing_an_account(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partial = tmp_path / "partial.ldif"
    partial.write_text((DATA / "example.current.ldif").read_text().split("# record 2")[0])
    assert cli.main(["ad", EXAMPLE, "--format", "ldif", "--current", str(partial)]) == 2
    assert "svc-backup is not in the export" in capsys.readouterr().err


def test_fleet_one_change_set_through_a_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [_client(tmp_path, n) for n in ("C1", "C2", "C3")]
    assert cli.main(["ad", *files, "--format", "samba-tool"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert out.count("st 'already exists' group add cifs-upcall-clients") == 1
    for n in ("C1", "C2", "C3"):
        assert f"group addmembers cifs-upcall-clients '{n}$'" in out
    # each server's descriptor names the group, once; no client is named there
    assert out.count("add-principal 'FS1$' cifs-upcall-clients") == 1
    assert out.count("add-principal") == 2
    assert cli.main(["ad", *files, "--format", "powershell"]) == cli.EXIT_OK
    ps = capsys.readouterr().out
    assert "-Replace" not in ps and ps.count("New-ADGroup") == 1
    assert "PrincipalsAllowedToDelegateToAccount (@($now) + $trustee.DistinguishedName)" in ps


def test_fleet_files_must_agree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [_client(tmp_path, "C1"), _client(tmp_path, "C2", realm="OTHER.COM")]
    assert cli.main(["ad", *files, "--format", "samba-tool"]) == cli.EXIT_INPUT
    assert "realm OTHER.COM differs from EXAMPLE.COM" in capsys.readouterr().err
    same = [_client(tmp_path, "C1"), _client(tmp_path, "C1")]
    assert cli.main(["ad", *same, "--format", "samba-tool"]) == cli.EXIT_INPUT


def test_fleet_file_lists_the_clients(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for n in ("C1", "C2"):
        _client(tmp_path, n)
    (tmp_path / "fleet.yaml").write_text("fleet: [C1.yaml, C2.yaml]\n")
    assert cli.main(["ad", str(tmp_path / "fleet.yaml"), "--format", "samba-tool"]) == 0
    listed = capsys.readouterr().out
    files = [str(tmp_path / "C1.yaml"), str(tmp_path / "C2.yaml")]
    assert cli.main(["ad", *files, "--format", "samba-tool"]) == 0
    assert capsys.readouterr().out == listed
    (tmp_path / "bad.yaml").write_text("fleet: [C1.yaml]\nrealm: X\n")
    assert cli.main(["ad", str(tmp_path / "bad.yaml")]) == cli.EXIT_INPUT
    assert "a fleet file holds only 'fleet'" in capsys.readouterr().err


def test_ldif_for_a_fleet_needs_the_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [_client(tmp_path, n) for n in ("C1", "C2")]
    export = tmp_path / "current.ldif"
    export.write_text(
        "".join(
            f"dn: CN={a.rstrip('$')},CN=Computers,DC=example,DC=com\nsAMAccountName: {a}\n"
            f"objectSid: S-1-5-21-1-2-3-{1100 + i}\nuserAccountControl: 69632\n\n"
            for i, a in enumerate(["C1$", "C2$", "FS1$", "FS2$"])
        )
    )
    assert cli.main(["ad", *files, "--format", "ldif", "--current", str(export)]) == 2
    err = capsys.readouterr().err
    assert "cifs-upcall-clients is not in the export: create the group first" in err
    with export.open("a") as f:
        f.write(
            "dn: CN=cifs-upcall-clients,CN=Users,DC=example,DC=com\n"
            "sAMAccountName: cifs-upcall-clients\nobjectSid: S-1-5-21-1-2-3-1200\n\n"
        )
    assert cli.main(["ad", *files, "--format", "ldif", "--current", str(export)]) == 0
    out = capsys.readouterr().out
    assert out.count("add: member") == 2 and out.count("S-1-5-21-1-2-3-1200") == 2  # 2 servers
    assert "S-1-5-21-1-2-3-1100)" not in out  # the descriptors name the group, not clients
