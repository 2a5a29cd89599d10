"""``gssproxy-conf``: argument parsing and output only; the work is in the other modules,
imported lazily so ``--help`` stays fast.

Exit codes: 0 ok; 1 differences (diff) or errors (check; warnings too with --strict);
2 invalid input; 3 refused (a file we do not own, one edited by hand, or a merged gssproxy
configuration that gssproxy would not start on); 4 I/O error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .install.apply import FileState
    from .install.plan import HostFacts
    from .model import Config

EXIT_OK, EXIT_DIFF, EXIT_INPUT, EXIT_REFUSED, EXIT_IO = 0, 1, 2, 3, 4

DESCRIPTION = """\
Describe a client's cifs-upcall + gssproxy setup in one YAML file and write every piece:
gssproxy services (SMB and NFS apart, protected users on their own sockets), a krb5.conf.d
snippet, the request-key rule, the helper's policy, autofs entries, the socket directory,
and the Active Directory side (LDIF, samba-tool, PowerShell).
Files carry a marker line; gssproxy-conf only ever rewrites files that carry it."""

EPILOG = """\
examples:
  gssproxy-conf generate site.yaml                 print every file
  gssproxy-conf generate site.yaml -o out/         write them under out/ (out/etc/...)
  gssproxy-conf diff site.yaml                     what apply would change in /
  gssproxy-conf apply site.yaml --dry-run          list the actions only
  gssproxy-conf ad site.yaml --format samba-tool   the directory changes (re-runnable)
  gssproxy-conf ad c1.yaml c2.yaml --export-command   how to export the current values
  gssproxy-conf ad c1.yaml c2.yaml --format ldif --current current.ldif   fleet LDIF
  gssproxy-conf check /etc/gssproxy                lint an existing configuration
exit codes: 0 ok, 1 differences/check errors (--strict: warnings too), 2 invalid input,
            3 refused (a file not ours, or a set gssproxy would not start on), 4 I/O error"""


def _load(path: str) -> Config:
    from .errors import Problem
    from .schema import load_file

    warnings: list[Problem] = []
    config = load_file(path, warnings)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return config


def _host(root: str | None) -> HostFacts:
    from .install.plan import HostFacts
    from .render.systemd import MAIN_KRB5_CONF, includes_snippet_dir

    if root is None:
        return HostFacts()
    try:
        text = (Path(root) / MAIN_KRB5_CONF.relative_to("/")).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    return HostFacts(krb5_includedir=includes_snippet_dir(text))


def _report_states(states: list[FileState], dry_run: bool) -> None:
    from .install.apply import Action

    verb = "would " if dry_run else ""
    for s in states:
        if s.action is not Action.UNCHANGED:
            print(f"{verb}{s.action.value}: {s.target}")


def cmd_generate(args: argparse.Namespace) -> int:
    from .install.plan import build

    plan = build(_load(args.file))
    if args.output is None:
        for f in plan.files:
            print(f"==> {f.path} <==")
            sys.stdout.write(f.content)
            print()
        return EXIT_OK
    from .install.apply import apply

    _report_states(apply(plan, Path(args.output), dry_run=args.dry_run), args.dry_run)
    for note in plan.notes:
        print(f"next: {note}", file=sys.stderr)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from .install.apply import Action, assess
    from .install.diff import unified
    from .install.plan import build

    states = assess(build(_load(args.file), _host(args.root)), Path(args.root))
    sys.stdout.write(unified(states))
    return EXIT_OK if all(s.action is Action.UNCHANGED for s in states) else EXIT_DIFF


def cmd_apply(args: argparse.Namespace) -> int:
    from .install.apply import apply
    from .install.plan import build

    config = _load(args.file)
    plan = build(config, _host(args.root))
    trial = None
    if args.try_gssproxy:
        from .install.trial import try_gssproxy

        trial = try_gssproxy
    states = apply(
        plan, Path(args.root), dry_run=args.dry_run, force_edited=args.force_edited, trial=trial
    )
    _report_states(states, args.dry_run)
    _warn_keytab(config, Path(args.root))
    for note in plan.notes:
        print(f"next: {note}", file=sys.stderr)
    return EXIT_OK


def _warn_keytab(config: Config, root: Path) -> None:
    """Released gssproxy impersonates with the keytab's first entry: say so if it is wrong."""
    from .lint.check import keytab_findings

    keytab = root / config.client.keytab.relative_to("/")
    if keytab.is_file():
        for f in keytab_findings(str(keytab), config.client_principal):
            print(f"warning: {f}", file=sys.stderr)


def cmd_remove(args: argparse.Namespace) -> int:
    from .install.apply import remove
    from .install.plan import MANAGED_PATHS, build

    paths = list(MANAGED_PATHS)
    if args.file:  # the paths that depend on the file (policy, automount map)
        paths += [f.path for f in build(_load(args.file)).files]
    states = remove(paths, Path(args.root), dry_run=args.dry_run, force_edited=args.force_edited)
    _report_states(states, args.dry_run)
    if not states:
        print("nothing of gssproxy-conf's to remove", file=sys.stderr)
    elif not args.dry_run:
        print("next: systemctl daemon-reload; systemctl reload gssproxy", file=sys.stderr)
    return EXIT_OK


def cmd_ad(args: argparse.Namespace) -> int:
    import shlex

    from .ad import directory, ldif, powershell, samba_tool
    from .ad.changes import change_set
    from .ad.fleet import load_all

    configs = load_all(args.file, _load)
    cs = change_set(configs)
    base_dn = configs[0].base_dn
    if args.export_command:
        for cmd in directory.export_commands(cs.accounts(), base_dn):
            print(cmd)
        return EXIT_OK
    state = None
    if args.current:
        try:
            text = Path(args.current).read_text(encoding="utf-8")
        except OSError as exc:
            from .errors import Code, ConfigError, Location, Problem

            raise ConfigError(
                [Problem(Code.IO, f"cannot read: {exc.strerror}", Location(args.current, 0))]
            ) from None
        state = directory.parse(text, args.current)
    extra = tuple(shlex.split(args.samba_tool_options or ""))
    renderings = {
        "ldif": lambda: ldif.render_for(cs, state, base_dn),
        "samba-tool": lambda: samba_tool.render(cs, extra),
        "powershell": lambda: powershell.render(cs),
    }
    if args.format != "all":
        chosen = [args.format]
    else:
        chosen = [n for n in renderings if n != "ldif" or state is not None]
        if state is None:
            print(
                "gssproxy-conf: no LDIF without --current EXPORT (the directory's current "
                "values); see --export-command",
                file=sys.stderr,
            )
    if args.dry_run:
        print("(--dry-run: ad only prints; it never changes the directory)", file=sys.stderr)
    texts = [(name, renderings[name]()) for name in chosen]  # all or nothing on errors
    for i, (name, text) in enumerate(texts):
        if len(chosen) > 1:
            print(("\n" if i else "") + f"#### {name}")
        sys.stdout.write(text)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from .lint.check import Severity, keytab_findings, keytab_principals, lint_paths

    directory = Path(args.directory)
    main = (
        Path(args.main)
        if args.main
        else (directory / "gssproxy.conf" if (directory / "gssproxy.conf").exists() else None)
    )
    if not directory.is_dir():
        print(f"gssproxy-conf: {directory}: not a directory", file=sys.stderr)
        return EXIT_INPUT
    findings = lint_paths(directory, main)
    if args.keytab:
        wanted = (
            [(args.principal, "")]
            if args.principal
            else [
                (p, f" (krb5_principal in {f})")
                for p, f in keytab_principals(directory, args.keytab)
            ]
        )
        if not wanted:
            print(
                f"gssproxy-conf: no impersonating service with keytab:{args.keytab} names its "
                "krb5_principal; give --principal",
                file=sys.stderr,
            )
            return EXIT_INPUT
        for principal, where in dict.fromkeys(wanted):
            findings += keytab_findings(args.keytab, principal, where)
    for f in findings:
        print(f)
    if not findings:
        print(f"{directory}: no problems found")
    errors = sum(f.severity is Severity.ERROR for f in findings)
    if findings:
        print(f"{errors} error(s), {len(findings) - errors} warning(s)", file=sys.stderr)
    return EXIT_DIFF if errors or (findings and args.strict) else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gssproxy-conf",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="render every file (to stdout, or under -o DIR)")
    g.add_argument("file", help="the YAML description")
    g.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="write the files under DIR (DIR/etc/gssproxy/...) instead of printing",
    )
    g.add_argument("--dry-run", action="store_true", help="with -o: only list the actions")
    g.set_defaults(func=cmd_generate)

    d = sub.add_parser("diff", help="show what apply would change (exit 1 if anything)")
    d.add_argument("file")
    d.add_argument("--root", default="/", metavar="DIR", help="compare with DIR instead of /")
    d.add_argument("--dry-run", action="store_true", help="accepted; diff never writes")
    d.set_defaults(func=cmd_diff)

    a = sub.add_parser("apply", help="install the files (atomic; only files gssproxy-conf owns)")
    a.add_argument("file")
    a.add_argument("--root", default="/", metavar="DIR", help="install under DIR instead of /")
    a.add_argument("--dry-run", action="store_true", help="list the actions, write nothing")
    a.add_argument(
        "--force-edited",
        action="store_true",
        help="overwrite our files even if they were edited by hand",
    )
    a.add_argument(
        "--try-gssproxy",
        action="store_true",
        help="also start a throwaway gssproxy (private mount namespace) on the merged set "
        "before writing; refuse if it does not start",
    )
    a.set_defaults(func=cmd_apply)

    r = sub.add_parser(
        "remove", help="take out exactly the files gssproxy-conf wrote (marker and hash intact)"
    )
    r.add_argument(
        "file",
        nargs="?",
        help="the YAML description, for the paths it chose (helper policy, automount map); "
        "without it only the fixed paths",
    )
    r.add_argument("--root", default="/", metavar="DIR", help="under DIR instead of /")
    r.add_argument("--dry-run", action="store_true", help="list the files, remove nothing")
    r.add_argument(
        "--force-edited", action="store_true", help="also remove our files edited by hand"
    )
    r.set_defaults(func=cmd_remove)

    ad = sub.add_parser(
        "ad",
        help="print the directory changes (LDIF, samba-tool, PowerShell) for one client or a "
        "fleet (several files: one change set)",
    )
    ad.add_argument(
        "file", nargs="+", help="one YAML description per client, or a fleet file listing them"
    )
    ad.add_argument(
        "--current",
        metavar="EXPORT",
        help="LDIF export of the accounts' current values (needed for --format ldif)",
    )
    ad.add_argument(
        "--export-command",
        action="store_true",
        help="print the ldbsearch/ldapsearch command that makes the export, and exit",
    )
    ad.add_argument("--format", choices=["ldif", "samba-tool", "powershell", "all"], default="all")
    ad.add_argument(
        "--samba-tool-options",
        metavar="OPTS",
        help="appended to each samba-tool command, e.g. '-H ldap://dc1 -U admin'",
    )
    ad.add_argument("--dry-run", action="store_true", help="accepted; ad only prints")
    ad.set_defaults(func=cmd_ad)

    c = sub.add_parser("check", help="lint an existing gssproxy configuration directory")
    c.add_argument("directory", nargs="?", default="/etc/gssproxy")
    c.add_argument(
        "--main", metavar="FILE", help="the main file (default: DIRECTORY/gssproxy.conf if present)"
    )
    c.add_argument(
        "--keytab",
        metavar="FILE",
        help="also check that FILE's first entry is the client principal (gssproxy 0.9 "
        "impersonates with the first entry)",
    )
    c.add_argument(
        "--principal",
        metavar="NAME",
        help="with --keytab: the principal expected first (default: the krb5_principal of the "
        "impersonating services that use FILE)",
    )
    c.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    c.add_argument("--dry-run", action="store_true", help="accepted; check never writes")
    c.set_defaults(func=cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import ConfigError, GssproxyConfError, OwnershipError

    try:
        rc: int = args.func(args)
    except ConfigError as exc:
        for prob in exc.problems:
            print(prob, file=sys.stderr)
        print("gssproxy-conf: invalid input; nothing was written", file=sys.stderr)
        return EXIT_INPUT
    except OwnershipError as exc:
        for prob in exc.problems:
            print(prob, file=sys.stderr)
        print("gssproxy-conf: refused; nothing was written", file=sys.stderr)
        return EXIT_REFUSED
    except GssproxyConfError as exc:
        for prob in exc.problems:
            print(prob, file=sys.stderr)
        return EXIT_IO
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
