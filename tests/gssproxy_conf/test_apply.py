"""apply/diff: atomic writes, only files we own, nothing written on refusal, --dry-run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gssproxy_conf import cli, schema
from gssproxy_conf.errors import OwnershipError
from gssproxy_conf.install import plan
from gssproxy_conf.install.apply import Action, apply, assess
from gssproxy_conf.install.marker import Ownership, ownership, stamp

from .conftest import DATA


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_apply_then_unchanged(example, tmp_path: Path) -> None:
    p = plan.build(example)
    states = apply(p, tmp_path)
    assert {s.action for s in states} == {Action.CREATE}
    files = tree(tmp_path)
    assert len(files) == len(p.files)
    for f in p.files:
        target = tmp_path / str(f.path).lstrip("/")
        assert target.read_text() == f.content
        assert ownership(target.read_text()) is Ownership.OURS
        assert target.stat().st_mode & 0o777 == 0o644
    assert not [n for n in files if ".tmp" in n]  # no temp files left behind
    assert {s.action for s in apply(p, tmp_path)} == {Action.UNCHANGED}


CIFS_UTILS_RULE = "create cifs.spnego * * /usr/sbin/cifs.upcall %k\n"


def test_cifs_utils_rule_is_left_alone(example, tmp_path: Path) -> None:
    """Debian's cifs-utils conffile stays; our more specific line wins by best match."""
    rk = tmp_path / "etc/request-key.d/cifs.spnego.conf"
    rk.parent.mkdir(parents=True)
    rk.write_text(CIFS_UTILS_RULE)
    apply(plan.build(example), tmp_path)
    assert rk.read_text() == CIFS_UTILS_RULE
    ours = (tmp_path / "etc/request-key.d/cifs-upcall.conf").read_text()
    assert "create cifs.spnego ver=0x2;* * /usr/sbin/cifs-upcall " in ours


def test_our_old_request_key_file_is_removed(example, tmp_path: Path) -> None:
    old = tmp_path / "etc/request-key.d/cifs.spnego.conf"
    old.parent.mkdir(parents=True)
    old.write_text(stamp("create cifs.spnego * * /opt/cifs-upcall/bin/cifs-upcall %k\n"))
    states = {str(s.path): s.action for s in apply(plan.build(example), tmp_path)}
    assert states["/etc/request-key.d/cifs.spnego.conf"] is Action.REMOVE
    assert not old.exists()


def test_foreign_file_refused_and_nothing_written(example, tmp_path: Path) -> None:
    rk = tmp_path / "etc/request-key.d/cifs-upcall.conf"
    rk.parent.mkdir(parents=True)
    rk.write_text(CIFS_UTILS_RULE)
    with pytest.raises(OwnershipError) as ei:
        apply(plan.build(example), tmp_path)
    assert "not written by gssproxy-conf" in str(ei.value)
    assert tree(tmp_path) == {"etc/request-key.d/cifs-upcall.conf": CIFS_UTILS_RULE}


def test_edited_file_refused_unless_forced(example, tmp_path: Path) -> None:
    p = plan.build(example)
    apply(p, tmp_path)
    smb = tmp_path / "etc/gssproxy/50-cifs-upcall-smb.conf"
    smb.write_text(smb.read_text() + "  debug = yes\n")
    before = tree(tmp_path)
    changed = schema.load((DATA / "example.yaml").read_text().replace("fs2.", "fs3."))
    with pytest.raises(OwnershipError, match="edited"):
        apply(plan.build(changed), tmp_path)
    assert tree(tmp_path) == before
    states = apply(plan.build(changed), tmp_path, force_edited=True)
    assert {s.path.name: s.action for s in states}["50-cifs-upcall-smb.conf"] is Action.UPDATE
    assert "debug" not in smb.read_text()


def test_update_and_stale_removal(example, tmp_path: Path) -> None:
    apply(plan.build(example), tmp_path)
    # drop nfs and protected users: their gssproxy services must go, or they stay active
    text = (DATA / "example.yaml").read_text()
    text = text.split("nfs:")[0] + "automount:" + text.split("automount:")[1]
    smaller = schema.load(text)
    states = {str(s.path): s.action for s in apply(plan.build(smaller), tmp_path)}
    assert states["/etc/gssproxy/50-cifs-upcall-nfs.conf"] is Action.REMOVE
    assert states["/etc/gssproxy/51-cifs-upcall-protected.conf"] is Action.REMOVE
    assert states["/etc/cifs-upcall/policy.yaml"] is Action.UPDATE
    assert not (tmp_path / "etc/gssproxy/50-cifs-upcall-nfs.conf").exists()
    # a foreign file at a managed path is not ours to remove
    foreign = tmp_path / "etc/gssproxy/50-cifs-upcall-nfs.conf"
    foreign.write_text("[service/x]\n")
    assert all(
        str(s.path) != "/etc/gssproxy/50-cifs-upcall-nfs.conf"
        for s in assess(plan.build(smaller), tmp_path)
    )
    assert foreign.exists()


def test_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = DATA / "example.yaml"
    assert cli.main(["apply", str(src), "--root", str(tmp_path), "--dry-run"]) == 0
    assert cli.main(["generate", str(src), "-o", str(tmp_path / "o"), "--dry-run"]) == 0
    assert list(tmp_path.iterdir()) == []
    out = capsys.readouterr().out
    assert "would create: " in out and "50-cifs-upcall-smb.conf" in out


def test_cli_diff_and_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(DATA / "example.yaml")
    assert cli.main(["diff", src, "--root", str(tmp_path)]) == cli.EXIT_DIFF
    out = capsys.readouterr().out
    assert "--- /dev/null" in out and "+  impersonate = yes" in out
    assert cli.main(["apply", src, "--root", str(tmp_path)]) == 0
    capsys.readouterr()
    assert cli.main(["diff", src, "--root", str(tmp_path)]) == cli.EXIT_OK
    assert capsys.readouterr().out == ""
    os.unlink(tmp_path / "etc/auto.smb")
    (tmp_path / "etc/auto.smb").write_text("mine -fstype=nfs srv:/x\n")
    assert cli.main(["apply", src, "--root", str(tmp_path)]) == cli.EXIT_REFUSED
    assert "E-NOT-OWNED" in capsys.readouterr().err


def test_marker_detects_edits() -> None:
    text = stamp("a = b\n")
    assert ownership(text) is Ownership.OURS
    assert ownership(text + "x") is Ownership.EDITED
    assert ownership("a = b\n") is Ownership.FOREIGN
    assert ownership(None) is Ownership.ABSENT


def test_duplicate_target_paths_are_refused(example_text: str) -> None:
    from gssproxy_conf.errors import ConfigError

    clash = example_text + "helper: {policy: /etc/auto.smb}\n"
    with pytest.raises(ConfigError, match="would hold both"):
        plan.build(schema.load(clash))


def test_nfs_is_opt_in(example_text: str) -> None:
    off = schema.load(example_text.replace("nfs: {enable: true, impersonate: false}", "nfs: {}"))
    assert off.nfs is None
    assert plan.build(off).get("/etc/gssproxy/50-cifs-upcall-nfs.conf") is None


def test_our_old_nfs_file_is_removed(example, tmp_path: Path) -> None:
    old = tmp_path / "etc/gssproxy/50-nfs-client.conf"
    old.parent.mkdir(parents=True)
    old.write_text(stamp("[service/nfs-client]\n  mechs = krb5\n  euid = 0\n"))
    states = {str(s.path): s.action for s in apply(plan.build(example), tmp_path)}
    assert states["/etc/gssproxy/50-nfs-client.conf"] is Action.REMOVE and not old.exists()


def test_remove_takes_out_exactly_our_files(
    example, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = {
        "etc/request-key.d/cifs.spnego.conf": CIFS_UTILS_RULE,
        "etc/gssproxy/24-nfs-server.conf": (DATA / "distro/debian/24-nfs-server.conf").read_text(),
        "etc/gssproxy/gssproxy.conf": "[gssproxy]\n",
    }
    for name, text in foreign.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    p = plan.build(example)
    apply(p, tmp_path)
    assert len(tree(tmp_path)) == len(foreign) + len(p.files)
    src = str(DATA / "example.yaml")
    edited = tmp_path / "etc/auto.smb"
    edited.write_text(edited.read_text() + "x -fstype=cifs ://fs1.example.com/x\n")
    before = tree(tmp_path)
    assert cli.main(["remove", src, "--root", str(tmp_path)]) == cli.EXIT_REFUSED
    assert tree(tmp_path) == before  # refused: nothing removed
    assert cli.main(["remove", src, "--root", str(tmp_path), "--dry-run", "--force-edited"]) == 0
    assert tree(tmp_path) == before
    assert cli.main(["remove", src, "--root", str(tmp_path), "--force-edited"]) == 0
    assert tree(tmp_path) == foreign
    capsys.readouterr()
    assert cli.main(["remove", "--root", str(tmp_path)]) == 0  # again: nothing left of ours
    assert "nothing of gssproxy-conf's to remove" in capsys.readouterr().err
