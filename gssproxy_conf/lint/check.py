"""Lint an existing gssproxy configuration for the traps of gssproxy 0.9 (docs/impersonation.md).

``lint`` is pure: it takes the main file and the directory's files as (name, text) pairs, in
the order gssproxy reads them. ``lint_paths`` does the reading.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from .. import validators
from .gssproxy_ini import IniFile, Section, parse

# executables that run other programs: program= on them admits whatever they run
_INTERPRETER_RE = re.compile(r"^(python|perl|ruby|node|php|lua|java|bash|dash|zsh|sh)[0-9.]*$")
SNIPPET_RE = re.compile(r"^[0-9]{2}-.+\.conf$")  # gp_config.c:817
BOOL_TRUE = {"1", "on", "true", "yes"}
BOOL_WORDS = BOOL_TRUE | {"0", "off", "false", "no"}
BOOL_OPTIONS = {
    "trusted",
    "impersonate",
    "allow_any_uid",
    "allow_protocol_transition",
    "allow_constrained_delegation",
    "allow_client_ccache_sync",
    "kernel_nfsd",
    "debug",
    "syslog_status",
}
SERVICE_OPTIONS = BOOL_OPTIONS - {"debug", "syslog_status"} | {
    "euid",
    "mechs",
    "socket",
    "cred_store",
    "cred_usage",
    "krb5_principal",
    "selinux_context",
    "program",
    "min_lifetime",
    "filter_flags",
    "enforce_flags",
}
GLOBAL_OPTIONS = {"debug", "debug_level", "syslog_status", "run_as_user", "worker threads"}
LEGACY_STORE = {"krb5_keytab", "krb5_ccache", "krb5_client_keytab"}
FLAG_NAMES = {
    "DELEGATE",
    "MUTUAL_AUTH",
    "REPLAY_DETECT",
    "SEQUENCE",
    "CONFIDENTIALITY",
    "INTEGRITIY",
    "ANONYMOUS",
}
# compiled into Debian's and Fedora's gssproxy (the -s option changes it)
DEFAULT_SOCKET = "/var/lib/gssproxy/default.sock"


class Severity(enum.Enum):
    ERROR = "error"  # gssproxy refuses the config, drops a service, or it cannot work
    WARNING = "warning"  # works, but not as the author probably meant


class Rule(enum.Enum):
    DUPLICATE_SECTION = "GP001"
    GLOBALS_IN_SNIPPET = "GP002"
    MECHS = "GP003"
    PROGRAM = "GP004"
    IMPERSONATE_NO_NAME = "GP005"
    SHARED_SOCKET = "GP006"
    TRAILING_COMMENT = "GP007"
    IGNORED_FILE = "GP008"
    LEGACY_CRED_STORE = "GP009"
    NOT_A_BOOLEAN = "GP010"
    SUBSTITUTION = "GP011"
    UNKNOWN_OPTION = "GP012"
    MISSING_EUID = "GP013"
    SOCKET_PATH = "GP014"
    FLAG_NAME = "GP015"
    CRED_USAGE = "GP016"
    SYNTAX = "GP017"
    KEYTAB_FIRST_ENTRY = "GP018"


@dataclass(frozen=True)
class Finding:
    rule: Rule
    severity: Severity
    file: str
    line: int
    message: str
    fix: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.severity.value} {self.rule.value}: "
            f"{self.message}\n    fix: {self.fix}"
        )


@dataclass(frozen=True)
class _Svc:
    file: str
    section: Section


def _bool(value: str | None) -> bool:
    return value is not None and value.lower() in BOOL_TRUE


def _line(s: Section, key: str) -> int:
    e = s.entry(key)
    return e.line if e else s.line


def _service_findings(file: str, s: Section) -> list[Finding]:
    out: list[Finding] = []

    def add(rule: Rule, sev: Severity, line: int, msg: str, fix: str) -> None:
        out.append(Finding(rule, sev, file, line, msg, fix))

    name = s.service or s.name
    if s.first("euid") is None:
        add(
            Rule.MISSING_EUID,
            Severity.ERROR,
            s.line,
            f"service {name} has no euid: gssproxy refuses the whole configuration",
            "add 'euid = 0' (or the client's uid)",
        )
    mechs = s.entry("mechs")
    if mechs is None:
        add(
            Rule.MECHS,
            Severity.ERROR,
            s.line,
            f"service {name} has no mechs: it is discarded",
            "add 'mechs = krb5'",
        )
    elif mechs.value != "krb5":
        add(
            Rule.MECHS,
            Severity.ERROR,
            mechs.line,
            f"mechs = {mechs.value!r}: gssproxy compares "
            "the whole value with 'krb5', so the service is silently discarded",
            "write exactly 'mechs = krb5'",
        )
    for e in s.entries:
        if e.key not in SERVICE_OPTIONS:
            hint = (
                "put it into [gssproxy] in gssproxy.conf"
                if e.key in GLOBAL_OPTIONS
                else "check the spelling (gssproxy.conf(5))"
            )
            add(
                Rule.UNKNOWN_OPTION,
                Severity.WARNING,
                e.line,
                f"{e.key!r} is not a service option and is ignored",
                hint,
            )
        if re.search(r"\s[#;]", e.value):
            add(
                Rule.TRAILING_COMMENT,
                Severity.WARNING,
                e.line,
                f"{e.key} = {e.value!r}: only "
                "whole-line comments exist; the '# ...' is part of the value",
                "move the comment to a line of its own",
            )
        if e.key in BOOL_OPTIONS and e.value.lower() not in BOOL_WORDS:
            add(
                Rule.NOT_A_BOOLEAN,
                Severity.WARNING,
                e.line,
                f"{e.key} = {e.value!r} is not a boolean and counts as false",
                "use yes or no",
            )
        if e.key == "cred_store":
            key = e.value.split(":", 1)[0]
            if key in LEGACY_STORE:
                add(
                    Rule.LEGACY_CRED_STORE,
                    Severity.ERROR,
                    e.line,
                    f"cred_store key {key!r} is the old name; gssproxy refuses the configuration",
                    f"use {key.removeprefix('krb5_')}:",
                )
            bad = [m for m in re.findall(r"%.", e.value) if m not in ("%U", "%u", "%%")]
            if bad:
                add(
                    Rule.SUBSTITUTION,
                    Severity.ERROR,
                    e.line,
                    f"{', '.join(bad)} is not "
                    "expanded; the store becomes invalid and acquisition fails",
                    "only %U (uid), %u (user name) and %% exist",
                )
        elif "%U" in e.value or "%u" in e.value:
            add(
                Rule.SUBSTITUTION,
                Severity.WARNING,
                e.line,
                f"{e.key}: %U/%u are expanded only in cred_store values",
                "use a literal value",
            )
        if e.key in ("filter_flags", "enforce_flags"):
            for tok in re.split(r"[,\s]+", e.value):
                word = tok[1:] if tok[:1] in "+-" else tok
                if tok and (
                    tok[:1] not in "+-"
                    or (word not in FLAG_NAMES and not re.match(r"^0x[0-9a-fA-F]+$|^\d+$", word))
                ):
                    fix = (
                        "INTEGRITY is spelled INTEGRITIY in gssproxy; or use +0x20"
                        if word == "INTEGRITY"
                        else "each flag needs + or - and a known name"
                    )
                    add(Rule.FLAG_NAME, Severity.WARNING, e.line, f"flag {tok!r} is ignored", fix)
        if e.key == "cred_usage" and e.value.lower() not in ("initiate", "accept", "both"):
            add(
                Rule.CRED_USAGE,
                Severity.ERROR,
                e.line,
                f"cred_usage = {e.value!r} is invalid",
                "use initiate, accept or both",
            )
        if e.key == "socket":
            err = validators.socket_path(e.value)
            if err and "bytes" in err:
                add(Rule.SOCKET_PATH, Severity.ERROR, e.line, err, "use a shorter path")
            elif not e.value.startswith("/"):
                add(
                    Rule.SOCKET_PATH,
                    Severity.ERROR,
                    e.line,
                    "socket must be an absolute path",
                    "use an absolute path",
                )
    program = s.entry("program")
    if program is not None and _INTERPRETER_RE.search(program.value.rsplit("/", 1)[-1]):
        add(
            Rule.PROGRAM,
            Severity.WARNING,
            program.line,
            "program= is matched against the "
            "realpath of the caller's executable: for a Python (or any script) client that is the "
            "interpreter, which admits every script it runs and breaks on upgrades",
            "remove program= and give the service a dedicated socket in a 0700 directory",
        )
    elif program is not None:
        add(
            Rule.PROGRAM,
            Severity.WARNING,
            program.line,
            f"program = {program.value} matches only callers whose executable's realpath is "
            "exactly that file (a symlink or a moved binary no longer matches)",
            "fine for a native client; make sure the path is the binary's realpath",
        )
    if _bool(s.first("impersonate")) and s.first("krb5_principal") is None:
        add(
            Rule.IMPERSONATE_NO_NAME,
            Severity.WARNING,
            _line(s, "impersonate"),
            f"service {name} impersonates, so callers that send no name (root using the "
            "machine keytab, rpc.gssd for uid == euid) fail with BAD_NAME",
            "keep machine-credential use in another service, or set krb5_principal to the "
            "machine principal",
        )
    return out


def lint(main: tuple[str, str] | None, snippets: list[tuple[str, str]]) -> list[Finding]:
    """``main`` = (name, text) of gssproxy.conf; ``snippets`` = every file of the directory."""
    out: list[Finding] = []
    parsed: list[tuple[str, IniFile, bool]] = []
    if main is not None:
        parsed.append((main[0], parse(main[1]), True))
    for fname, text in sorted(snippets, key=lambda p: Path(p[0]).name):
        base = Path(fname).name
        if not SNIPPET_RE.match(base):
            if base.endswith(".conf") and base != "gssproxy.conf":
                out.append(
                    Finding(
                        Rule.IGNORED_FILE,
                        Severity.WARNING,
                        fname,
                        1,
                        "gssproxy reads only files named NN-name.conf; this one is ignored",
                        f"rename it, e.g. 50-{base}",
                    )
                )
            continue
        parsed.append((fname, parse(text), False))

    seen: dict[str, str] = {}
    services: list[_Svc] = []
    for fname, ini, is_main in parsed:
        out += [
            Finding(
                Rule.SYNTAX,
                Severity.ERROR,
                fname,
                i.line,
                i.message,
                "fix the line; gssproxy refuses files it cannot parse",
            )
            for i in ini.issues
        ]
        in_file: set[str] = set()
        for s in ini.sections:
            if s.name in in_file:
                out.append(
                    Finding(
                        Rule.DUPLICATE_SECTION,
                        Severity.WARNING,
                        fname,
                        s.line,
                        f"[{s.name}] appears twice in this file; the two are merged",
                        "keep one section",
                    )
                )
                continue
            in_file.add(s.name)
            if s.name in seen:
                out.append(
                    Finding(
                        Rule.DUPLICATE_SECTION,
                        Severity.ERROR,
                        fname,
                        s.line,
                        f"[{s.name}] was already defined in {seen[s.name]}; this "
                        "section is dropped entirely (the first file wins)",
                        "give the service a unique name, or edit the first one",
                    )
                )
                continue
            seen[s.name] = fname
            if s.name == "gssproxy":
                if not is_main:
                    out.append(
                        Finding(
                            Rule.GLOBALS_IN_SNIPPET,
                            Severity.WARNING,
                            fname,
                            s.line,
                            "[gssproxy] in a snippet is ignored when gssproxy.conf "
                            "has one (Debian's does)",
                            "move these options into /etc/gssproxy/gssproxy.conf",
                        )
                    )
                for e in s.entries:
                    if e.key in SERVICE_OPTIONS - GLOBAL_OPTIONS:
                        out.append(
                            Finding(
                                Rule.UNKNOWN_OPTION,
                                Severity.WARNING,
                                fname,
                                e.line,
                                f"{e.key} is a service option; in [gssproxy] it is ignored",
                                "move it into a [service/...] section",
                            )
                        )
            elif s.service is not None:
                out += _service_findings(fname, s)
                services.append(_Svc(fname, s))
            else:
                out.append(
                    Finding(
                        Rule.UNKNOWN_OPTION,
                        Severity.WARNING,
                        fname,
                        s.line,
                        f"section [{s.name}] is not read by gssproxy",
                        "use [gssproxy] or [service/NAME]",
                    )
                )
    out += _socket_findings(services)
    return out


def _socket_findings(services: list[_Svc]) -> list[Finding]:
    out: list[Finding] = []
    by_socket: dict[str, list[_Svc]] = {}
    for svc in services:
        if svc.section.first("mechs") != "krb5":
            continue  # discarded by gssproxy anyway (reported above)
        by_socket.setdefault(svc.section.first("socket") or DEFAULT_SOCKET, []).append(svc)
    for sock, svcs in by_socket.items():
        for i, later in enumerate(svcs):
            s = later.section
            for earlier in svcs[:i]:
                e = earlier.section
                same_sel = all(e.first(k) == s.first(k) for k in ("program", "selinux_context"))
                if same_sel and (
                    _bool(e.first("allow_any_uid")) or e.first("euid") == s.first("euid")
                ):
                    out.append(
                        Finding(
                            Rule.SHARED_SOCKET,
                            Severity.ERROR,
                            later.file,
                            s.line,
                            f"services {e.service} ({earlier.file}) and {s.service} share "
                            f"{sock} and the first one matches the same callers: "
                            "gssproxy refuses this configuration",
                            "give each service its own socket",
                        )
                    )
                    break
        if sock != DEFAULT_SOCKET:
            continue
        for svc in svcs:
            s = svc.section
            root_only_impersonation = _bool(s.first("impersonate")) and not _bool(
                s.first("allow_any_uid")
            )
            name = (s.service or "").lower()
            smb_named = re.search(r"cifs|smb", name) is not None and "nfs" not in name
            if root_only_impersonation or smb_named:
                out.append(
                    Finding(
                        Rule.SHARED_SOCKET,
                        Severity.WARNING,
                        svc.file,
                        s.line,
                        f"service {s.service} serves SMB on the default socket, which NFS's "
                        "rpc.gssd also uses: NFS and SMB share one socket and its services",
                        "give the SMB service its own socket in a 0700 directory (socket = "
                        "/run/gssproxy/cifs/cifs.sock) and point the helper at it",
                    )
                )
    return out


def lint_paths(directory: Path, main: Path | None) -> list[Finding]:
    """Read gssproxy.conf (if given) and every ``*.conf`` in ``directory``; then ``lint``."""
    main_pair = (str(main), main.read_text(encoding="utf-8")) if main else None
    snippets = [
        (str(p), p.read_text(encoding="utf-8"))
        for p in sorted(directory.glob("*.conf"))
        if main is None or p.resolve() != main.resolve()
    ]
    return lint(main_pair, snippets)


def keytab_findings(keytab: str, principal: str, where: str = "") -> list[Finding]:
    """The keytab's first entry must be ``principal``: released gssproxy impersonates with it."""
    from upcall.krb5.keytab import KeytabError, read_first_entry

    fix = (
        f"rewrite the keytab with {principal} first (ktutil: rkt, then wkt in that order), or "
        "give gssproxy a keytab of its own holding only that principal"
    )
    try:
        first = read_first_entry(keytab)
    except OSError as exc:
        msg = f"cannot read the keytab: {exc.strerror}"
        return [Finding(Rule.KEYTAB_FIRST_ENTRY, Severity.ERROR, keytab, 0, msg, fix)]
    except KeytabError as exc:
        return [Finding(Rule.KEYTAB_FIRST_ENTRY, Severity.ERROR, keytab, 0, str(exc), fix)]
    if first.principal.lower() == principal.lower():
        return []
    msg = (
        f"the first entry is {first.principal}, not {principal}{where}: gssproxy 0.9 "
        "impersonates with the first entry, so S4U runs as the wrong account"
    )
    return [Finding(Rule.KEYTAB_FIRST_ENTRY, Severity.ERROR, keytab, 0, msg, fix)]


def keytab_principals(directory: Path, keytab: str) -> list[tuple[str, str]]:
    """(krb5_principal, file) of impersonating services that use ``keytab``."""
    out = []
    for p in sorted(directory.glob("*.conf")):
        for s in parse(p.read_text(encoding="utf-8")).sections:
            if f"keytab:{keytab}" in s.values("cred_store") and _bool(s.first("impersonate")):
                principal = s.first("krb5_principal")
                if principal:
                    out.append((principal, str(p)))
    return out
