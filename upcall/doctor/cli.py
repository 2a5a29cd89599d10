"""`cifs-upcall doctor` and `cifs-upcall explain`: the admin commands (root, a shell).

doctor checks the chain in the order an upcall uses it and prints one line per check; exit 1 on
any FAIL. explain prints every decision of an upcall for a user and a server, with no kernel and
no process of the user (the request a mount with upcall_target=mount would send).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from . import checks, gather
from .facts import RequestKeyFacts
from .report import Check, Status, exit_code

DEFAULT_SERVER = "fs.example.com"  # only request-key's matching sees it without --server


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cifs-upcall", description="diagnose cifs-upcall")
    sub = p.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("doctor", "check request-key, policy, gssproxy, krb5, keytab, KDC, clock, SPN"),
        ("explain", "every decision of an upcall for --user at --server, without a kernel"),
    ):
        s = sub.add_parser(name, help=helptext)
        need = name == "explain"
        s.add_argument("--user", required=need, help="local user name or uid")
        s.add_argument("--server", required=need, help="the SMB server's host name")
        s.add_argument("--json", action="store_true", help="one JSON object")
        s.add_argument("--pid", type=int, help="a process of the user (e.g. in a container): "
                       "check the route from its network namespace to --server")  # fmt: skip
        s.add_argument("--root", default="/", help="prefix for /etc (request-key.d, gssproxy, "
                       "the default policy); for tests and chroots")  # fmt: skip
    return p


@dataclasses.dataclass
class Context:
    root: str
    helper_argv: list[str]  # the chosen request-key line's helper arguments (%k -> "1")
    policy_path: str
    policy_explicit: bool


def _etc(root: str, *parts: str) -> str:
    return os.path.join(root, "etc", *parts)


def _helper_argv(rk: RequestKeyFacts) -> list[str] | None:
    if rk.program is None or not checks.is_ours(rk.program, rk.argv):
        return None
    args = list(checks.helper_args(rk.argv) or ())
    from ..cli import argument_errors

    return args if argument_errors(args) is None else None


def _context(root: str, rk: RequestKeyFacts) -> Context:
    from ..cli import parse_args

    argv = _helper_argv(rk) or []
    a = parse_args(argv) if argv else None
    explicit = bool(a and a.policy)
    path = a.policy if a and a.policy else _etc(root, "cifs-upcall", "policy.yaml")
    return Context(root, argv, path, explicit)


def run_doctor(a: argparse.Namespace) -> list[Check]:
    """Every check, in the order an upcall meets what it checks."""
    from ..policy.rules import Policy, UserFacts, principal_for

    out: list[Check] = []
    rk = gather.request_key(a.root, a.server or DEFAULT_SERVER)
    out.append(checks.request_key(rk))
    args_check = checks.request_key_args(rk)
    if args_check:
        out.append(args_check)
    ctx = _context(a.root, rk)

    pf, pol = gather.policy(ctx.policy_path, ctx.policy_explicit)
    out.append(checks.policy(pf))
    k5 = gather.krb5()
    realm = k5.default_realm or ""
    probe = f"cifs-upcall-doctor@{realm}"
    if a.user and isinstance(pol, Policy):
        import pwd

        try:
            pw = pwd.getpwnam(a.user)
            probe = principal_for(pol, UserFacts(pw.pw_uid, pw.pw_name), realm) or probe
        except KeyError:
            pass
    client_keytab, client_principal = "", ""
    for sock, kind in pf.sockets:
        out.append(checks.socket(gather.gssproxy_socket(sock, kind, probe)))
        svc = gather.gssproxy_service(_etc(a.root, "gssproxy"), sock, kind)
        out.append(checks.service(svc))
        if svc.keytab and "%" not in svc.keytab:
            kt = gather.keytab(svc.keytab, svc.principal)
            out.append(checks.keytab(kt))
            if kind == "impersonate" and not client_keytab and kt.first:
                client_keytab, client_principal = kt.path, svc.principal or kt.first

    impersonates = any(k == "impersonate" for _, k in pf.sockets)
    out.extend(checks.krb5(k5, protocol_transition=impersonates))
    if not client_keytab:
        from ..cli import parse_args

        la = parse_args(ctx.helper_argv) if ctx.helper_argv else None
        path = (la.keytab if la and la.keytab else "/etc/krb5.keytab").removeprefix("FILE:")
        if os.path.exists(path):
            kt = gather.keytab(path, "")
            out.append(checks.keytab(kt))
            if kt.first:
                client_keytab, client_principal = kt.path, kt.first

    kf = gather.kdc(k5.kdcs[0], realm) if k5.kdcs and realm else None
    out.append(checks.kdc(kf, k5))
    c = checks.clock(kf)
    if c:
        out.append(c)
    if a.server:
        out.append(checks.spn(gather.spn(a.server, client_keytab, client_principal)))
    if a.pid and a.server:
        out.append(checks.route(gather.caller_route(a.pid, a.server)))
    if a.user and a.server:
        out.append(checks.dry_run(gather.dry_run(a.user, a.server, ctx.helper_argv or ["1"])))
    return out


def run_explain(a: argparse.Namespace) -> int:
    rk = gather.request_key(a.root, a.server)
    ctx = _context(a.root, rk)
    f = gather.dry_run(a.user, a.server, ctx.helper_argv or ["1"])
    if a.json:
        print(json.dumps({"request_key": dataclasses.asdict(rk), **dataclasses.asdict(f)}))
        return 0 if f.ok else 1
    print(f"explain {a.user}@{a.server}: uid {f.uid}, no process (as upcall_target=mount)")
    if rk.program:
        print(f"  request-key  {rk.where}: {rk.program} {' '.join(rk.argv)}")
    else:
        print("  request-key  no line matches cifs.spnego")
    for step in f.trail:
        print(f"  {step['source']:<12} {step['outcome']:<7} {step['detail']}")
    print(checks.dry_run(f).line())
    return 0 if f.ok else 1


def main(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    if os.geteuid() != 0:
        print("cifs-upcall: doctor and explain need root (as the helper runs)", file=sys.stderr)
        return 2
    if a.command == "explain":
        return run_explain(a)
    results = run_doctor(a)
    if a.json:
        print(json.dumps({"ok": exit_code(results) == 0,
                          "checks": [r.as_dict() for r in results]}))  # fmt: skip
    else:
        for r in results:
            print(r.line())
        fails = sum(r.status is Status.FAIL for r in results)
        warns = sum(r.status is Status.WARN for r in results)
        print(f"{len(results)} checks: {fails} FAIL, {warns} warn")
    return exit_code(results)
