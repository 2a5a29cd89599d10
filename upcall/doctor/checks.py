"""doctor's checks: pure functions from gathered facts to one Check each (no I/O).

Run in the doctor process (root, an admin's shell); unit-tested without root.
"""

from __future__ import annotations

import os

from ..cli import argument_errors
from ..paths import request_key_line
from .facts import (
    DryRunFacts,
    KdcFacts,
    KeytabFacts,
    Krb5Facts,
    PolicyFacts,
    RequestKeyFacts,
    RouteFacts,
    ServiceFacts,
    SocketFacts,
    SpnFacts,
)
from .report import Check, fail, ok, warn

PACKAGED_CONF = "/etc/request-key.d/cifs-upcall.conf"
PACKAGED_LINE = request_key_line()
MAX_SKEW = 300.0  # MIT's and AD's default clockskew (5 minutes)
WARN_SKEW = 60.0
_CIFS_UTILS = "cifs.upcall"


def helper_args(argv: tuple[str, ...]) -> tuple[str, ...] | None:
    """The helper's own arguments in a request-key line's argv (argv[0] excluded): everything
    after `-m upcall` for an interpreter line, else all of it; None if this is not cifs-upcall
    (judged by the caller from the program name)."""
    if "-m" in argv:
        i = argv.index("-m")
        if argv[i + 1 : i + 2] == ("upcall",):
            return argv[i + 2 :]
    return argv


def is_ours(program: str, argv: tuple[str, ...]) -> bool:
    base = os.path.basename(program)
    if base == "cifs-upcall":
        return True
    return base.startswith("python") and "-m" in argv and "upcall" in argv


def request_key(f: RequestKeyFacts) -> Check:
    name = "request-key"
    if f.program is None:
        return fail(
            name,
            f"no request-key line handles cifs.spnego keys ({f.error or 'nothing matched'}); "
            "every Kerberos mount fails with error(126)",
            f"install {PACKAGED_CONF} with '{PACKAGED_LINE}'",
        )
    line = f"{f.where} runs {f.program}"
    if os.path.basename(f.program) == _CIFS_UTILS:
        return fail(
            name,
            f"cifs-utils' line wins: {line}, not cifs-upcall",
            f"install {PACKAGED_CONF} with '{PACKAGED_LINE}' (ver=0x2;* beats cifs-utils' '* *'"
            " whatever the file order), or remove the other line",
        )
    if not is_ours(f.program, f.argv):
        return warn(name, f"{line}, which is not cifs-upcall", "check that this wrapper execs it")
    if not f.program_exists:
        return fail(name, f"{line}, which does not exist or is not executable",
                    "install cifs-upcall or correct the path in the line")  # fmt: skip
    return ok(name, f"{line} {_shown(f.argv)}".rstrip())


def _shown(argv: tuple[str, ...] | list[str]) -> str:
    """The line's arguments as written: request-key's probe serial "1" back to %k."""
    args = list(argv)
    if args and args[-1] == "1":
        args[-1] = "%k"
    return " ".join(args)


def request_key_args(f: RequestKeyFacts) -> Check | None:
    """The chosen line's arguments, parsed by the helper's own parser (None: not our line)."""
    if f.program is None or not is_ours(f.program, f.argv):
        return None
    name = "request-key-args"
    args = list(helper_args(f.argv) or ())
    err = argument_errors(args)
    if err is not None:
        return fail(
            name,
            f"{f.where}: the helper rejects its arguments ({err}); every upcall fails and the "
            "key is negated for the default 5 s",
            f"correct or remove the flag in {f.where.rsplit(':', 1)[0]} (cifs-upcall --help)",
        )
    if not any(a.isdecimal() for a in args):
        return fail(name, f"{f.where}: no %k in the line, so the helper gets no key serial",
                    f"end the line in {f.where.rsplit(':', 1)[0]} with %k")  # fmt: skip
    return ok(name, f"{_shown(args)} parses")


def policy(f: PolicyFacts) -> Check:
    name = "policy"
    if f.error:
        trust = "owned by" in f.error or "writable" in f.error
        if trust:
            fix = (f"chown root:root {f.path} and its directories; chmod go-w them; until then "
                   "every upcall fails closed (bad-policy)")  # fmt: skip
        else:
            fix = "fix the file at the line named (schema: docs/impersonation.md)"
        return fail(name, f.error, fix)
    if not f.exists:
        if f.explicit:
            return fail(name, f"{f.path} does not exist (named by --policy)",
                        "write it or drop --policy from the request-key line")  # fmt: skip
        return ok(name, f"no {f.path}: own tickets only, never impersonates")
    socks = ", ".join(f"{s} ({k})" for s, k in f.sockets) or "no gssproxy socket"
    return ok(name, f"{f.path}: trusted, {f.rules} rule(s), {socks}")


def socket(f: SocketFacts) -> Check:
    name = f"gssproxy-socket {f.socket}"
    d = os.path.dirname(f.socket)
    if not f.dir_exists:
        return fail(name, f"directory {d} does not exist",
                    "start gssproxy with the cifs-upcall service (tmpfiles.d creates the "
                    "directory)")  # fmt: skip
    if f.dir_uid != 0 or f.dir_mode & 0o077 or not f.dir_is_dir:
        return fail(
            name,
            f"directory {d} is uid {f.dir_uid} mode {f.dir_mode & 0o7777:04o}, not root-only "
            "(the helper refuses it: proxy-unavailable)",
            f"chown root:root {d}; chmod 0700 {d} (whoever can create the socket can forge "
            "tickets)",
        )
    if f.connect_error:
        return fail(name, f"gssproxy is not answering on it ({f.connect_error})",
                    "start gssproxy (systemctl start gssproxy) and check its log")  # fmt: skip
    if f.probe_reason in ("proxy-unavailable", "deadline-exceeded"):
        return fail(name, f"gssproxy did not serve a request: {f.probe_message}",
                    "check gssproxy's log (gssproxy -d)")  # fmt: skip
    if f.probe_reason == "proxy-no-service":
        return fail(
            name,
            "gssproxy answers but has no service for root on this socket",
            "add a [service/...] with euid = 0 and socket = this path (gssproxy-conf "
            "generate), then reload gssproxy",
        )
    return ok(name, "root-only directory; gssproxy answers with a service for root")


def service(f: ServiceFacts) -> Check:
    name = f"gssproxy-service {f.socket}"
    if not f.section:
        return fail(name, f"no [service/...] in {f.conf_dir} has socket = {f.socket}",
                    "generate it (gssproxy-conf generate/apply) or correct the policy's "
                    "socket")  # fmt: skip
    if f.euid != "0":
        return fail(name, f"{f.where} [{f.section}] has euid = {f.euid or '(none)'}, not 0",
                    "set euid = 0: the helper connects as root")  # fmt: skip
    return ok(name, f"{f.where} [{f.section}] keytab {f.keytab or '(none)'}")


def keytab(f: KeytabFacts) -> Check:
    name = f"keytab {f.path}"
    if f.error:
        return fail(name, f.error, "restore the keytab (e.g. samba-tool domain exportkeytab, "
                    "adcli update) and make it readable by root")  # fmt: skip
    if f.first is None:
        return fail(name, "the keytab has no entry", "export the client account's keys into it")
    if f.expected and f.first.lower() != f.expected.lower():
        return fail(
            name,
            f"first entry is {f.first}, not {f.expected}: gssproxy 0.9 impersonates with the "
            "first entry",
            f"rewrite the keytab with {f.expected} first (ktutil: rkt, delent, wkt) or export "
            "only that principal",
        )
    return ok(name, f"first entry {f.first}")


def krb5(f: Krb5Facts, *, protocol_transition: bool) -> list[Check]:
    name = "krb5"
    files = ", ".join(f.files)
    out: list[Check] = []
    if not f.default_realm:
        out.append(fail(name, f"no default_realm in {files}",
                        "set [libdefaults] default_realm = YOUR.REALM"))  # fmt: skip
    else:
        out.append(ok(name, f"default realm {f.default_realm} ({files})"))
    if f.snippets and f.snippet_dir.rstrip("/") not in {d.rstrip("/") for d in f.includedirs}:
        out.append(fail(
            "krb5-includedir",
            f"{f.snippet_dir} has {', '.join(f.snippets)} but {files} has no includedir for "
            "it: those settings are ignored",
            f"add 'includedir {f.snippet_dir}/' at the top of /etc/krb5.conf",
        ))  # fmt: skip
    if protocol_transition:
        val = (f.forwardable or "").lower()
        if val not in ("true", "yes", "1", "on"):
            out.append(fail(
                "krb5-forwardable",
                f"forwardable is {f.forwardable or 'unset (false)'}; the policy impersonates "
                "and S4U2Proxy needs a forwardable evidence ticket",
                "set [libdefaults] forwardable = true (gssproxy-conf writes it in "
                "/etc/krb5.conf.d/cifs-upcall.conf, which needs the includedir)",
            ))  # fmt: skip
        else:
            out.append(ok("krb5-forwardable", "forwardable = true (protocol transition)"))
    return out


def kdc(f: KdcFacts | None, k: Krb5Facts) -> Check:
    name = "kdc"
    if f is None:
        return warn(
            name,
            f"no kdc = line for {k.default_realm} in krb5.conf (DNS SRV look-up is "
            "not checked by doctor)",
            "name the KDC in [realms] to have it checked",
        )
    if not f.answered:
        return fail(name, f"{f.address} did not answer an AS-REQ ({f.error})",
                    "check the network path, the firewall (88/udp, 88/tcp) and kdc = in "
                    "krb5.conf")  # fmt: skip
    return ok(name, f"{f.address} answered over {f.transport} in {f.rtt_ms:.0f} ms")


def clock(f: KdcFacts | None) -> Check | None:
    if f is None or not f.answered or f.skew is None:
        return None
    name = "clock"
    s = f.skew
    how = f"this clock is {abs(s):.0f} s {'behind' if s > 0 else 'ahead of'} the KDC {f.address}"
    fix = "synchronise time with the domain controllers (chrony, systemd-timesyncd)"
    if abs(s) > MAX_SKEW:
        return fail(name, f"{how}; Kerberos allows {MAX_SKEW:.0f} s (clock-skew)", fix)
    if abs(s) > WARN_SKEW:
        return warn(name, how, fix)
    return ok(name, f"{abs(s):.1f} s off the KDC {f.address}")


def spn(f: SpnFacts) -> Check:
    name = f"spn {f.server}"
    if not f.principal:
        return warn(name, "not checked: no client keytab to ask for a ticket with",
                    "run doctor with --user for a full dry run")  # fmt: skip
    if f.ok:
        return ok(name, f"{f.principal} got a ticket for {f.spn} (TGS request)")
    return fail(name, f"{f.principal} asking for cifs@{f.server}: {f.reason}: {f.message}",
                f.hint or "see the message")  # fmt: skip


def dry_run(f: DryRunFacts) -> Check:
    name = f"dry-run {f.user}@{f.server}"
    if f.uid is None:
        return fail(name, f"no local user {f.user}", "check the name (getent passwd)")
    if f.ok:
        imp = "impersonated" if f.impersonated else "not impersonated"
        return ok(name, f"{f.source}: {f.principal} for {f.spn} ({imp})")
    return fail(name, f"{f.reason}: {f.message}", f.hint or "see `cifs-upcall explain`")


def route(f: RouteFacts) -> Check:
    """The caller's network namespace can reach the server (the local worker's KDC and DNS
    traffic and the kernel's SMB connection leave from there)."""
    where = "the host's" if f.same_netns else "its own"
    name = f"route pid {f.pid} -> {f.server}"
    if f.address is None or (f.error and not f.routed and not f.address):
        return fail(name, f.error, "check the pid and the server name")
    if f.error and not f.routed:
        return fail(name, f"no route to {f.address} from {where} network namespace ({f.error})",
                    "give the container a route to the file server and the KDC")  # fmt: skip
    via = f" via {f.gateway}" if f.gateway else ""
    return ok(name, f"{f.address} through {f.device or '?'}{via} from {f.source or '?'} "
              f"({where} network namespace)")  # fmt: skip
