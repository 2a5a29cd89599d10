"""cifs-upcall's entry point: request-key runs it for each cifs.spnego key. Root, host namespaces.

Thin on purpose: for a key (`... SERIAL`) or a dry run (`--dry-run DESCRIPTION`) it imports only
posix, sys, _struct, _socket, syslog, python-keyutils and the pre-built cffi module (no site with
`python3 -I -S`, no argparse, no gssapi). It does the keyring edge itself (describe; assume
authority once the request is on its way), pins the caller with a pidfd, and hands both to the
warm daemon (`cifs-upcall serve`) over its root-only socket with the command line; the daemon
parses the arguments with the one parser, checks the key's origin, runs the pipeline and
replies with the payload and the log lines; the client instantiates or negates and writes the
lines.

If no daemon accepts the request within ACK_BOUND, the client runs the same code in-process
(respond.py through cli.py) and says `via=in-process` in its log line. Everything else
(`serve`, `doctor`, --help, --version, ...) goes to cli.py.
"""

import posix  # not os (~1 ms of imports): the calls here are all in posix
import sys

from .paths import DAEMON_SOCKET as DEFAULT_SOCKET

TYPE_CHECKING = False  # typing costs the thin client ~9 ms of imports
if TYPE_CHECKING:
    import _socket

    from .errors import KeyringError

__all__ = ["DEFAULT_SOCKET", "apply", "clean_environment", "main", "parse_serial", "settled"]

SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SERIAL_MAX = 2**31 - 1  # key_serial_t is int32_t; serials are positive
ACK_BOUND = 2.0  # seconds for a daemon to accept before the client works in-process
REPLY_MARGIN = 5.0  # past the upcall's deadline, for the daemon's reply to arrive
DEFAULT_DEADLINE = 10.0


def clean_environment() -> None:
    """Start from an environment of our own: request-key passes HOME and PATH, an admin's
    request-key line or shell may add GSS_USE_PROXY, KRB5_CONFIG, KRB5CCNAME, ... none of
    which may steer a root process (the workers set exactly what they need)."""
    for name in list(posix.environ):
        posix.unsetenv(name)
    posix.environ.clear()  # what os.environ starts from if os is imported later
    posix.putenv(b"PATH", SAFE_PATH.encode())
    posix.environ[b"PATH"] = SAFE_PATH.encode()
    os = sys.modules.get("os")
    if os is not None:  # already made from the old one: keep it true
        os.environ.clear()
        os.environ["PATH"] = SAFE_PATH


def parse_serial(text: str) -> int:
    """request-key's %k: a positive decimal key serial that fits key_serial_t."""
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise ValueError(f"key serial {text!r} is not a positive decimal number")
    serial = int(text, 10)
    if not 0 < serial <= SERIAL_MAX:
        raise ValueError(f"key serial {serial} is out of range (1..{SERIAL_MAX})")
    return serial


def _flag(argv: list[str], name: str) -> str | None:
    """The value of `--name V` or `--name=V` (last wins), without a parser: only the few the
    client needs before the daemon parses the line properly."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1 :]
    return value


def _mode(argv: list[str]) -> str | None:
    """ "key", "dry", or None: anything else is for the full command line (cli.py)."""
    if not argv or argv[0] in ("serve", "doctor", "explain") or "-h" in argv or "--help" in argv:
        return None
    if any(a in ("-v", "--version", "--no-daemon") for a in argv):
        return None
    if _flag(argv, "--dry-run") is not None:
        return "dry"
    return "key" if argv[-1].isdigit() else None


def main(argv: list[str] | None = None) -> int:
    """request-key's entry (root, host namespaces): a key or a dry run thin, the rest to cli."""
    args = sys.argv[1:] if argv is None else argv
    try:
        return _main(args)
    except (ImportError, SyntaxError) as e:  # a broken installation still logs and negates
        from .cli import startup_failure

        hint = "the installation is broken: reinstall cifs-upcall (cifs-upcall doctor)"
        return startup_failure(args, "internal-error", f"cannot start: {e!r}", hint)


def _main(args: list[str]) -> int:
    mode = _mode(args)
    if mode is None:
        from .cli import main as full

        return full(args)
    clean_environment()
    try:
        serial = parse_serial(args[-1]) if mode == "key" else 0
    except ValueError:
        from .cli import main as full

        return full(args)  # logs the refusal properly
    return run(mode, serial, args)


def run(mode: str, serial: int, argv: list[str]) -> int:
    """Key or dry run through the daemon, else in-process. Negates on every failure path."""
    # Connected first: the daemon accepts and hands the connection to a handler while this
    # process loads python-keyutils and describes the key (two CPUs' worth of overlap).
    conn, why = _connect(argv)
    described = ""
    reply = None
    try:
        # A dry run loads what a key's way loads, in the same order, minus the keyring calls
        import keyutils

        if mode == "key":
            described = keyutils.describe_key(serial).decode("utf-8", "replace")
        text = described.split(";", 4)[-1] if mode == "key" else _flag(argv, "--dry-run") or ""
        if conn is not None:
            reply, why = _exchange(conn, mode, serial, text if mode == "dry" else described, argv)
    except Exception as e:
        why = f"{type(e).__name__}: {e}"
    if reply is None:
        if conn is not None:
            conn.close()
        from .cli import in_process

        return in_process(mode, serial, argv, f"in-process ({why})")
    try:
        return apply(reply, serial if mode == "key" else None)
    finally:
        # Closed only now (or by this process's exit): the handler holds back what it does
        # after its reply (its workers' exit, its own, the next spare) until it sees this.
        assert conn is not None
        conn.close()


def _assume_authority(serial: int) -> None:
    """Client, the request sent: act for the key under construction. /sbin/request-key has
    assumed this authority before it ran us and the kernel keeps it across exec (describe
    and instantiate work without this call), so it is repeated off the request's path, for
    a runner that only linked the authorisation key; a failure shows where it matters, in
    instantiate or negate."""
    from .kernel import keyring

    try:
        keyring.assume_authority(serial)
    except Exception as e:
        _keyring_failure(e)  # a keyring refusal is left to instantiate or negate; a bug raises


def _pin(description: str) -> int:
    from .caller.pidpin import PinError, pin
    from .wire import pid_hint

    pid = pid_hint(description)
    if pid is None:
        return -1
    try:
        return pin(pid)[0]
    except PinError:
        return -1  # the daemon reports the caller as gone


def _socket_path(argv: list[str]) -> str:
    return _flag(argv, "--socket") or DEFAULT_SOCKET


def _connect(argv: list[str]) -> "tuple[_socket.socket | None, str]":
    """(The daemon's connection, "") or (None, why not), within ACK_BOUND."""
    import _socket

    path = _socket_path(argv)
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    s.settimeout(ACK_BOUND)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        return None, f"no daemon at {path}: {e.strerror or e}"
    return s, ""


def _exchange(
    s: "_socket.socket", mode: str, serial: int, text: str, argv: list[str]
) -> tuple[object, str]:
    """(Reply, "") from the daemon on `s`, or (None, why not)."""
    import _socket

    from . import fdpass, wire

    path = _socket_path(argv)
    deadline = float(_flag(argv, "--deadline") or DEFAULT_DEADLINE)
    pidfd = _pin(text)
    try:
        msg = wire.request(mode, serial, text, argv)
        s.sendmsg([msg], fdpass.one(pidfd))
        s.shutdown(_socket.SHUT_WR)
        # The send woke the handler with a sync wake-up, on this CPU as often as not: it
        # would wait there until this process blocks (~1 ms of the imports below, measured),
        # with the other CPU idle. Yield first; the imports then run while it waits on its
        # workers.
        posix.sched_yield()
        # what apply() will need, loaded while the daemon works rather than after its reply
        from . import log  # noqa: F401
        from .kernel import keyring  # noqa: F401 - and with it the cffi layer

        if mode == "key":
            _assume_authority(serial)
        buf, recs, acked = b"", [], False
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                what = "reply" if acked else "acceptance"
                return None, f"daemon at {path}: no {what} in time"
            if not chunk:
                break
            buf += chunk
            if len(buf) > wire.REPLY_MAX:
                return None, f"daemon at {path}: reply too large"
            got, buf = wire.records(buf, wire.REPLY_MAX)
            recs.extend(got)
            if not acked and recs:
                acked = True
                s.settimeout(deadline + REPLY_MARGIN)
        try:
            return wire.Reply.decode(recs), ""
        except ValueError as e:
            return None, f"daemon at {path}: {e}"
    finally:
        if pidfd >= 0:
            posix.close(pidfd)


def apply(reply: object, serial: int | None) -> int:
    """Carry out a Reply: log lines, stdout, payload file; for a key, instantiate it or negate
    it on every other path (even a crash), so the kernel never waits out its own 60 s."""
    from . import log
    from .wire import Reply

    assert isinstance(reply, Reply)
    log.setup(debug=reply.debug, echo=reply.echo, log_file=reply.log_file)
    answered = False
    try:
        for prio, line, entry in reply.lines:
            log.emit(prio, line, entry)
        if reply.stdout:
            sys.stdout.write(reply.stdout)
            sys.stdout.flush()
        if reply.payload is not None and reply.payload_out:
            from .files import write_atomic

            write_atomic(reply.payload_out, reply.payload, 0o600)
        if serial is None:
            return reply.exit
        if reply.exit == 0 and reply.payload is not None:
            answered = _instantiate(serial, reply.payload)
        return 0 if answered else 1
    finally:
        if serial is not None and not answered:
            _negate(serial, reply.negate_timeout)
        global _settled
        _settled = True


_settled = False  # apply() instantiated or negated the key: nothing may do it again


def settled() -> bool:
    return _settled


def _instantiate(serial: int, payload: bytes) -> bool:
    from . import log
    from .kernel import keyring

    try:
        keyring.instantiate(serial, payload)
        return True
    except Exception as e:
        err = _keyring_failure(e)
        log.emit(
            3, log.kv(outcome="failed", key=serial, reason=err.reason.value, error=err.message)
        )
        return False


def _negate(serial: int, timeout: int) -> None:
    from . import log
    from .kernel import keyring

    try:
        keyring.negate(serial, timeout)
    except Exception as e:  # no authority: not run by request-key (the line says why)
        log.emit(7, log.kv(key=serial, error=_keyring_failure(e).message))


def _keyring_failure(e: Exception) -> "KeyringError":
    """`e` if it is a KeyringError, else re-raised (errors.py, ~19 ms of imports with what
    it pulls in, is loaded only here, once the keyring refused)."""
    from .errors import KeyringError

    if not isinstance(e, KeyringError):
        raise e
    return e
