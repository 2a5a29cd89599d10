"""cifs-upcall: the entry point /sbin/request-key runs for cifs.spnego keys.

    /etc/request-key.d/cifs.spnego.conf:
        create  cifs.spnego  *  *  /opt/cifs-upcall/bin/cifs-upcall %k

Flags follow cifs.upcall's. `--dry-run DESCRIPTION` runs the whole pipeline but the keyring.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import syslog
from typing import TYPE_CHECKING, NoReturn

from . import __version__

if TYPE_CHECKING:
    from .pipeline import Options

EPILOG = """\
The kernel gives the helper only HOME and PATH; set options in request-key.d, e.g.
  create cifs.spnego * * /opt/cifs-upcall/bin/cifs-upcall -k /etc/krb5.conf %k
Every upcall logs one line to syslog (daemon facility, ident cifs-upcall) with outcome=,
source=, principal=, spn= and, on failure, reason= and hint=. -d adds each step tried.

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
        "--dry-run",
        metavar="DESCRIPTION",
        help="run the pipeline for this key description without a key",
    )
    p.add_argument("--payload-out", metavar="FILE", help="with --dry-run: write the payload here")
    p.add_argument("--json", action="store_true", help="with --dry-run: print one JSON object")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the helper's arguments; raises ArgumentError instead of exiting."""
    return _parser().parse_args(argv)


def argument_errors(argv: list[str]) -> str | None:
    """Why `argv` (a request-key line's arguments, %k included) would not parse, or None.
    For gssproxy-conf and doctor: the one parser decides."""
    try:
        parse_args(argv)
    except ArgumentError as e:
        return str(e)
    return None


def _options(a: argparse.Namespace) -> Options:
    from .pipeline import Options

    return Options(
        krb5_config=a.krb5conf,
        keytab=a.keytab,
        legacy_uid=a.legacy_uid,
        trust_dns=a.trust_dns,
        env_probe=not a.no_env_probe,
        deadline=a.deadline,
        policy_path=a.policy,
    )


def _write_private(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def dry_run(a: argparse.Namespace) -> int:
    from . import log
    from .errors import UpcallError
    from .origin import check_origin, parse_describe
    from .pipeline import Outcome, run_upcall
    from .request import parse_description

    text: str = a.dry_run
    try:
        if text.startswith("cifs.spnego;") or (
            text.count(";") >= 4 and not text.startswith("ver=")
        ):
            info = parse_describe(text)
            check_origin(info)
            text = info.description
        req = parse_description(text)
    except UpcallError as e:
        doc: dict[str, object] = {
            "outcome": "failed",
            "reason": e.reason.value,
            "message": e.message,
            "hint": e.hint,
            "source": None,
            "principal": None,
            "spn": None,
            "trail": [],
        }
        print(json.dumps(doc) if a.json else f"refused: {e.reason.value}: {e.message} ({e.hint})")
        return 1
    out: Outcome = run_upcall(req, _options(a))
    log.outcome(out, None)
    if out.payload is not None and a.payload_out:
        _write_private(a.payload_out, out.payload)
    if a.json:
        doc = {
            "outcome": "ok" if out.ok else "failed",
            "reason": out.reason.value if out.reason else None,
            "message": out.message,
            "hint": out.hint,
            "source": out.source or None,
            "principal": out.principal or None,
            "spn": out.spn or None,
            "impersonated": bool(out.token and out.token.impersonated),
            "uid": out.uid,
            "enctype": out.token.enctype if out.token else None,
            "session_key_len": len(out.token.session_key) if out.token else None,
            "payload_len": len(out.payload) if out.payload else None,
            "seconds": round(out.seconds, 4),
            "trail": out.trail,
        }
        print(json.dumps(doc))
    else:
        for step in out.trail:
            print(f"  {step['source']:<10} {step['outcome']:<7} {step['detail']}")
        print(log.summary(out, None))
    return 0 if out.ok else 1


def handle_key(serial: int, a: argparse.Namespace) -> int:
    """Answer the key: instantiate it, or negate it on every other path (even a crash), so
    the kernel never waits out its own 60 s negative timeout."""
    global _key_settled
    answered = False
    try:
        answered = _answer_key(serial, a)
    finally:
        if not answered:
            _negate(serial, a.negate_timeout)
        _key_settled = True  # startup_failure must not negate (and log) a second time
    return 0 if answered else 1


def _answer_key(serial: int, a: argparse.Namespace) -> bool:
    from . import keyring, log
    from .errors import Reason, UpcallError
    from .origin import check_origin
    from .pipeline import Outcome, run_upcall
    from .request import parse_description

    try:
        keyring.assume_authority(serial)
        info = keyring.describe(serial)
        check_origin(info)
        req = parse_description(info.description)
    except UpcallError as e:
        refused = log.kv(
            outcome="refused", key=serial, reason=e.reason.value, error=e.message, hint=e.hint
        )
        log.emit(syslog.LOG_ERR, refused)
        return False
    out: Outcome = run_upcall(req, _options(a))
    if out.ok and out.payload is not None:
        try:
            keyring.instantiate(serial, out.payload)
        except UpcallError as e:
            out.ok, out.reason, out.message, out.hint = False, Reason.KEYRING, e.message, e.hint
    log.outcome(out, serial)
    return out.ok


def _negate(serial: int, timeout: int) -> None:
    from . import keyring, log
    from .errors import UpcallError

    try:
        keyring.negate(serial, timeout)
    except UpcallError as e:
        log.emit(syslog.LOG_ERR, log.kv(key=serial, error=e.message))


def _fail(msg: str) -> NoReturn:
    print(f"cifs-upcall: {msg}", file=sys.stderr)
    syslog.syslog(syslog.LOG_ERR, msg)
    raise SystemExit(1)


DEFAULT_NEGATE_TIMEOUT = 5
_key_settled = False  # handle_key instantiated or negated the key already


def startup_serial(argv: list[str]) -> int | None:
    """The key serial of an argv that did not parse: its last numeric element (request-key
    passes %k last)."""
    return next((int(x) for x in reversed(argv) if x.isdecimal() and int(x) > 0), None)


def startup_options(argv: list[str]) -> tuple[int, str | None]:
    """--negate-timeout (else the default) and --log-file of an argv that did not parse, as far
    as they parse on their own."""
    try:
        known, _ = _parser().parse_known_args(argv)
    except (ArgumentError, SystemExit):
        return DEFAULT_NEGATE_TIMEOUT, None
    t = known.negate_timeout
    log_file = known.log_file if isinstance(known.log_file, str) else None
    return (t if isinstance(t, int) and t >= 0 else DEFAULT_NEGATE_TIMEOUT), log_file


def startup_failure(argv: list[str], reason: str, message: str, hint: str) -> int:
    """Runs in the helper (root, as request-key started it) when it cannot even start: bad
    arguments or a broken installation. One log line, then the key (if argv names one) is
    negated with the short timeout; depends on nothing but the standard library and
    libkeyutils, so it works when the rest of the package does not import."""
    serial = startup_serial(argv)
    timeout, log_file = startup_options(argv)
    line = (
        f"outcome=refused key={serial} reason={reason} negate_timeout={timeout} "
        f"error={json.dumps(message)} hint={json.dumps(hint)}"
    )
    print(f"cifs-upcall: {message}", file=sys.stderr)
    try:
        from . import journal, log

        line = log.kv(
            outcome="refused", key=serial, reason=reason, negate_timeout=timeout,
            error=message, hint=hint,
        )  # fmt: skip
        log.setup(debug=False, echo=False, log_file=log_file)
        prio = syslog.LOG_ERR
        fields = journal.fields_for(
            priority=prio, message="", outcome="refused", reason=reason, key=serial,
            error=message, hint=hint,
        )  # fmt: skip
        log.emit(prio, line, fields)
    except Exception:
        syslog.openlog("cifs-upcall", syslog.LOG_PID, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_ERR, line)
    if serial is not None and not _key_settled:
        _negate_bare(serial, timeout)
    return 2 if reason == "bad-arguments" else 1


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


def main(argv: list[str] | None = None) -> int:
    global _key_settled
    _key_settled = False
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["doctor"], ["explain"]):
        from .doctor.cli import main as doctor_main

        return doctor_main(args)
    try:
        return _main(args)
    except ArgumentError as e:
        hint = "fix the flags in the request-key line (cifs-upcall --help; cifs-upcall doctor)"
        return startup_failure(args, "bad-arguments", f"bad arguments: {e}", hint)
    except (ImportError, SyntaxError) as e:
        hint = "the installation is broken: reinstall cifs-upcall (cifs-upcall doctor)"
        return startup_failure(args, "internal-error", f"cannot start: {e!r}", hint)


def _main(argv: list[str]) -> int:
    from . import log

    a = parse_args(argv)
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
        serial = int(a.serial, 10)
    except ValueError:
        _fail(f"key serial {a.serial!r} is not a decimal number")
    if serial <= 0:
        _fail(f"key serial {serial} is not a key")
    return handle_key(serial, a)


if __name__ == "__main__":
    sys.exit(main())
