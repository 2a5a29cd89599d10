"""cifs-upcall: the entry point /sbin/request-key runs for cifs.spnego keys.

    /etc/request-key.d/cifs.spnego.conf:
        create  cifs.spnego  ver=0x2;*  *  /usr/sbin/cifs-upcall %k

Flags follow cifs.upcall's. `--dry-run DESCRIPTION` runs the whole pipeline but the keyring.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import syslog
from typing import NoReturn

from . import __version__

EPILOG = """\
The kernel gives the helper only HOME and PATH (the helper keeps only PATH); set options in
/etc/request-key.d/cifs-upcall.conf, e.g.
  create cifs.spnego ver=0x2;* * /usr/sbin/cifs-upcall -k /etc/krb5.conf %k
Every upcall logs one line (journald with CIFS_UPCALL_* fields where it runs, else syslog,
daemon facility, ident cifs-upcall) with outcome=, source=, principal=, spn=, via= and, on
failure, reason= and hint=. -d adds each step tried. `cifs-upcall doctor` checks the whole
chain; `cifs-upcall serve` is the warm daemon (cifs-upcall.socket).

Administrators and tests:
  cifs-upcall --dry-run 'ver=0x2;host=fs1.example.com;ip4=10.0.0.5;sec=krb5;uid=0x3e8;\\
      creduid=0x3e8;pid=0x1a2b;upcall_target=app' --payload-out /tmp/p.bin --json
runs everything except the keyring (namespaces, credentials and GSSAPI included), writes the
exact payload it would have instantiated (mode 0600: it holds a session key) and prints the
decision trail.
"""


class ArgumentError(Exception):
    """A flag or value the helper does not accept (argparse would exit 2 on stderr, which
    request-key sends to /dev/null)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ArgumentError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cifs-upcall",
        description="Answer a cifs.spnego key request with a Kerberos SPNEGO blob and session key.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("serial", nargs="?", help="key serial (request-key's %%k)")
    p.add_argument("-c", action="store_true", help=argparse.SUPPRESS)  # legacy, ignored
    p.add_argument("-d", "--debug", action="store_true", help="log every step (LOG_DEBUG)")
    p.add_argument(
        "-E",
        "--no-env-probe",
        action="store_true",
        help="do not read KRB5CCNAME from the calling process's environment",
    )
    p.add_argument(
        "-k",
        "--krb5conf",
        metavar="PATH",
        help="krb5.conf to use (read inside the caller's mount namespace)",
    )
    p.add_argument(
        "-K",
        "--keytab",
        metavar="PATH",
        help="keytab for user= mounts (default: KRB5_KTNAME or /etc/krb5.keytab)",
    )
    p.add_argument(
        "-l",
        "--legacy-uid",
        action="store_true",
        help="use the uid= field instead of creduid= to choose whose credentials",
    )
    p.add_argument(
        "-t",
        "--trust-dns",
        action="store_true",
        help="allow a reverse DNS (PTR) name as the server principal's host",
    )
    p.add_argument(
        "-e",
        "--expire",
        metavar="SECS",
        type=int,
        help="accepted for compatibility (dns_resolver keys are key.dns_resolver's job)",
    )
    p.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    p.add_argument(
        "--negate-timeout",
        metavar="SECS",
        type=int,
        default=5,
        help="how long a failed key stays negative (default 5; the kernel's own is 60)",
    )
    p.add_argument(
        "--deadline",
        metavar="SECS",
        type=float,
        default=10.0,
        help="upper bound on the credential search (default 10)",
    )
    p.add_argument(
        "--log-file",
        metavar="PATH",
        help="also append log lines to PATH (syslog is always used)",
    )
    p.add_argument(
        "--policy",
        metavar="FILE",
        help="impersonation policy (default /etc/cifs-upcall/policy.yaml if it exists; without "
        "one the helper never asks gssproxy)",
    )
    p.add_argument(
        "--host-krb5-config",
        metavar="PATH",
        help="the host's krb5.conf, read as root for the policy (default realm, domain_realm) "
        "and by the gssproxy worker (default /etc/krb5.conf; the helper ignores KRB5_CONFIG "
        "and every other inherited variable)",
    )
    p.add_argument(
        "--socket",
        metavar="PATH",
        help="the warm daemon's socket (default /run/cifs-upcall/upcall.sock); without an "
        "answer within 2 s the helper works in-process",
    )
    p.add_argument(
        "--no-daemon",
        action="store_true",
        help="work in-process, never asking the daemon (e.g. to compare)",
    )
    p.add_argument(
        "--dry-run",
        metavar="DESCRIPTION",
        help="run the pipeline for this key description without a key",
    )
    p.add_argument("--payload-out", metavar="FILE", help="with --dry-run: write the payload here")
    p.add_argument("--json", action="store_true", help="with --dry-run: print one JSON object")
    return p


_built: argparse.ArgumentParser | None = None


def parser() -> argparse.ArgumentParser:
    """The one parser, built once per process: building it costs ~1 ms (argparse asks the
    terminal for its width per argument), which the daemon pays once in its parent."""
    global _built
    if _built is None:
        _built = _parser()
    return _built


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the helper's arguments; raises ArgumentError instead of exiting."""
    return parser().parse_args(argv)


def argument_errors(argv: list[str]) -> str | None:
    """Why `argv` (a request-key line's arguments, %k included) would not parse, or None.
    For gssproxy-conf and doctor: the one parser decides."""
    try:
        parse_args(argv)
    except ArgumentError as e:
        return str(e)
    return None


def in_process(mode: str, serial: int, argv: list[str], via: str) -> int:
    """The thin client's fallback when no daemon answered: the same responder, here."""
    from .client import apply

    try:
        a = parse_args(argv)
    except ArgumentError as e:
        return _bad_arguments(serial if mode == "key" else None, str(e), argv)
    from .worker import child

    try:
        if mode == "dry":
            from .respond import dry_reply

            return apply(dry_reply(a.dry_run, a, None, via)[0], None)
        return handle_key(serial, a, via)
    finally:
        child.finish()


def _bad_arguments(serial: int | None, why: str, argv: list[str]) -> int:
    from .client import apply
    from .respond import bad_arguments

    print(f"cifs-upcall: bad arguments: {why}", file=sys.stderr)
    apply(bad_arguments(serial, why, argv), serial)
    return 2


DEFAULT_NEGATE_TIMEOUT = 5


def startup_serial(argv: list[str]) -> int | None:
    """The key serial of an argv that did not parse: its last numeric element (request-key
    passes %k last)."""
    return next((int(x) for x in reversed(argv) if x.isdecimal() and 0 < int(x) < 2**31), None)


def startup_options(argv: list[str]) -> tuple[int, str | None]:
    """--negate-timeout (else the default) and --log-file of an argv that did not parse, as far
    as they parse on their own."""
    try:
        known, _ = parser().parse_known_args(argv)
    except (ArgumentError, SystemExit):
        return DEFAULT_NEGATE_TIMEOUT, None
    t = known.negate_timeout
    log_file = known.log_file if isinstance(known.log_file, str) else None
    return (t if isinstance(t, int) and t >= 0 else DEFAULT_NEGATE_TIMEOUT), log_file


def startup_failure(argv: list[str], reason: str, message: str, hint: str) -> int:
    """Root, as request-key started it, when the helper cannot even start (a broken
    installation). One log line, then the key (if argv names one) is negated with the short
    timeout; depends on nothing but the standard library and libkeyutils, so it works when
    the rest of the package does not import."""
    serial = startup_serial(argv)
    timeout, log_file = startup_options(argv)
    line = (
        f"outcome=refused key={serial} reason={reason} negate_timeout={timeout} "
        f"error={json.dumps(message)} hint={json.dumps(hint)}"
    )
    print(f"cifs-upcall: {message}", file=sys.stderr)
    try:  # the responder's refusal line and journald entry, if that much still imports
        from . import log
        from .respond import refusal

        prio, line, entry = refusal(serial, reason, message, hint, negate_timeout=timeout)
        log.setup(debug=False, echo=False, log_file=log_file)
        log.emit(prio, line, entry)
    except Exception:
        syslog.openlog("cifs-upcall", syslog.LOG_PID, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_ERR, line)
    if serial is not None and not _settled():
        _negate_bare(serial, timeout)
    return 1


def _settled() -> bool:
    try:
        from .client import settled

        return settled()
    except Exception:
        return False


def _negate_bare(serial: int, timeout: int) -> None:
    """keyctl_negate through ctypes: request-key assumed the authority before exec."""
    import ctypes

    try:
        lib = ctypes.CDLL("libkeyutils.so.1", use_errno=True)
        rc = lib.keyctl_negate(ctypes.c_int32(serial), ctypes.c_uint(timeout), ctypes.c_int32(0))
    except OSError as e:
        syslog.syslog(syslog.LOG_ERR, f'key={serial} error="cannot load libkeyutils: {e}"')
        return
    if rc < 0:
        err = os.strerror(ctypes.get_errno())
        syslog.syslog(syslog.LOG_ERR, f'key={serial} error="cannot negate key: {err}"')


def dry_run(a: argparse.Namespace) -> int:
    from .client import apply
    from .respond import dry_reply

    return apply(dry_reply(a.dry_run, a, None, "in-process")[0], None)


def handle_key(serial: int, a: argparse.Namespace, via: str = "in-process") -> int:
    """Answer the key in this process: describe it, run the responder, then instantiate or
    negate (client.apply negates on every path that does not instantiate, even a crash)."""
    from . import pipeline  # noqa: F401 - a broken installation fails here, first
    from .client import apply
    from .errors import UpcallError
    from .kernel import keyring
    from .respond import key_reply, refused, reply_for

    try:
        keyring.assume_authority(serial)
        described = keyring.describe_raw(serial)
    except UpcallError as e:
        r = reply_for(a)
        r.lines.append(refused(e, serial, via))
        return apply(r, serial)
    return apply(key_reply(serial, described, a, None, via)[0], serial)


def _fail(msg: str) -> NoReturn:
    from . import log

    print(f"cifs-upcall: {log.escape(msg)}", file=sys.stderr)
    log.emit(syslog.LOG_ERR, log.kv(outcome="refused", error=msg))
    raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    """The full command line (root): dry runs, keys in-process, serve, doctor, --help."""
    args = sys.argv[1:] if argv is None else argv
    try:
        return _main(args)
    except (ImportError, SyntaxError) as e:
        hint = "the installation is broken: reinstall cifs-upcall (cifs-upcall doctor)"
        return startup_failure(args, "internal-error", f"cannot start: {e!r}", hint)


def _main(args: list[str]) -> int:
    from . import log
    from .client import clean_environment, parse_serial

    if args[:1] in (["doctor"], ["explain"]):  # an admin's own command: their environment
        from .doctor.cli import main as doctor_main

        return doctor_main(args)
    clean_environment()
    if args[:1] == ["serve"]:
        from .daemon import main as serve

        return serve(args[1:])
    try:
        a = parse_args(args)
    except ArgumentError as e:
        last = args[-1] if args else ""
        return _bad_arguments(
            int(last) if last.isdigit() and len(last) <= 10 else None, str(e), args
        )
    if a.version:
        print(f"version: {__version__}")
        return 0
    log.setup(debug=a.debug, echo=a.dry_run is not None and a.debug, log_file=a.log_file)
    if a.dry_run is not None:
        return dry_run(a)
    if a.payload_out or a.json:
        _fail("--payload-out and --json go with --dry-run")
    if a.serial is None:
        _fail("missing key serial (request-key passes it as %k)")
    try:
        serial = parse_serial(a.serial)
    except ValueError as e:
        _fail(str(e))
    return handle_key(serial, a)


if __name__ == "__main__":
    sys.exit(main())
