"""Run a function in a forked worker under a deadline; get back a small, validated result.

Workers do the dangerous parts (a caller's namespaces, dropped privileges, gssproxy's
interposer environment) so the parent stays root in the host namespaces with a clean
environment. Once a worker has entered a caller, code of the caller's may run in it (krb5
plugins, NSS modules), so the parent treats it as hostile:
- it reads at most RESULT_MAX bytes, and nothing past the deadline;
- a result is one line: a worker that has written its own waits (parks) until the parent
  lets it go after the reply, so that the teardown of its address space (~1.3 ms of CPU
  under this hypervisor) does not take a CPU from the request's path;
- it never waits for the worker past the deadline: SIGKILL, a short reap, and a worker stuck
  in the kernel (a FUSE read that never returns) is left to init;
- the result is JSON of a fixed shape; each field is checked by the source's own parser
  (sources/base.py), and errors are rebuilt through the errors registry.
The worker reports a crash by exception type and message only: formatting a traceback would
read source files, which in the caller's mount namespace are hers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import select
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from .. import fdpass
from ..errors import DeadlineExceeded, Reason, UpcallError, WorkerProtocolError, rebuild
from ..sources.base import parse_trail

Result = dict[str, Any]
RESULT_MAX = 64 * 1024
TEXT_MAX = 2048  # a message or hint from a worker
REAP_GRACE = 0.2  # seconds to collect a killed or finished worker before leaving it to init


def _clip(s: object) -> str:
    text = s if isinstance(s, str) else repr(s)
    return text[:TEXT_MAX]


def _report(fn: Callable[[], Result]) -> bytes:
    """Worker: the JSON line for fn()'s result or failure. Never raises."""
    try:
        try:
            out: Result = {"ok": fn()}
        except UpcallError as e:
            err = {"reason": e.reason.value, "message": _clip(e.message), "hint": _clip(e.hint)}
            out = {"error": err, "trail": [a.as_dict() for a in e.trail]}
        except BaseException as e:
            msg = _clip(f"{type(e).__name__}: {e}")
            out = {"error": {"reason": Reason.INTERNAL.value, "message": msg,
                             "hint": "a bug in cifs-upcall: please report this line"}}  # fmt: skip
        data = json.dumps(out).encode()
    except BaseException:
        data = b'{"error": {"reason": "internal-error", "message": "unserialisable result", '
        data += b'"hint": ""}}'
    return data[: RESULT_MAX + 1]


def rehearse(work: Callable[[Any], Result], plan: object, fn: Callable[[], Result]) -> None:
    """Worker, prepared, before its plan (a child.Ready): unpickle `work` and a plan like its
    own and serialise fn()'s result like its own, for nothing. The first time a forked worker runs
    this code it takes the copy-on-write faults of every page it writes to (refcounts,
    caches): ~0.4 ms under this hypervisor, then paid before anyone waits. Never raises;
    nothing is written anywhere."""
    with contextlib.suppress(Exception):
        _plan_of(_plan_message(work, plan, False))
    _report(fn)


def rehearsed(
    work: Callable[[Any], Result], plan: object, fn: Callable[[], Result], what: str
) -> Result:
    """Handler, rehearsing (handler._rehearse): pickle `work` and `plan` as give() would and
    parse fn()'s result as a worker's: the same code and pages as a request's, nothing
    forked."""
    _plan_message(work, plan, False)
    return parse(_report(fn), what)


def _plan_message(fn: Callable[[Any], Result], plan: object, gated: bool) -> bytes:
    """Handler: what Ready.give sends its worker (see Ready: pickled, our own data only)."""
    return pickle.dumps((fn, plan, gated))


def _plan_of(msg: bytes) -> tuple[Callable[[Any], Result], Any, bool]:
    """Prepared worker: _plan_message's (fn, plan, gated), from its own privileged parent."""
    fn, plan, gated = pickle.loads(msg)
    return fn, plan, gated


def isolate(w: int, keep: tuple[int, ...] = ()) -> None:
    """Worker, first thing after the fork: nothing of the parent's but the result pipe and
    `keep` (the caller's pidfd). A worker may run the caller's code later (her krb5 plugins):
    it must not hold the client's connection (to forge a reply past the parent's checks), the
    daemon's cache channel, its listener, or stdout/stderr (to print into a dry run's output
    or the daemon's log). 0-2 become /dev/null."""
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        if fd != null:
            os.dup2(null, fd, inheritable=False)
    keep_all = sorted({0, 1, 2, w, *keep})
    low = 3
    for fd in keep_all:
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, _fd_limit())


def _fd_limit() -> int:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if 0 < soft < 1 << 20 else 1 << 16


def _worker(fn: Callable[[], Result], w: int, keep: tuple[int, ...]) -> None:
    try:
        isolate(w, keep)
        _answer(w, _report(fn))
    finally:
        os._exit(0)


def then(fn: Callable[[], Result | None]) -> None:
    """Worker: run `fn` after the result is written (work the request need not wait for, such
    as the gssproxy credential's export); what it returns (or null) becomes a follow-up line
    the parent may read after its reply (follow_up): one line for each then()."""
    _thens.append(fn)


_thens: list[Callable[[], Result | None]] = []


def _write_line(w: int, data: bytes) -> None:
    view = memoryview(data + b"\n")
    while view:
        view = view[os.write(w, view) :]


def _answer(w: int, data: bytes) -> None:
    """Worker: write the result line, run what then() registered (each result a follow-up
    line), then park until the parent closes its end (after its reply, or by exiting): only
    then is this address space torn down. _report's JSON has no raw newline, so the line
    ends the result."""
    _write_line(w, data)
    for fn in _thens:
        try:
            extra = json.dumps(fn()).encode()  # "null" for nothing: the parent waits no longer
        except BaseException:  # a follow-up is optional: the result is out
            extra = b"null"
        _write_line(w, extra[: RESULT_MAX + 1])
    parked = select.poll()
    parked.register(w, 0)  # a pipe's write end reports POLLERR once no reader is left
    parked.poll()


class _Parked:
    """Parent: a worker that gave its result and waits to be let go; `rest` is what was read
    past its result line (the start of a follow-up)."""

    __slots__ = ("pid", "r", "rest")

    def __init__(self, pid: int, r: int, rest: bytes = b"") -> None:
        self.pid, self.r, self.rest = pid, r, rest


class Answer(dict[str, Any]):
    """Parent: a worker's result (as parsed), which knows its parked worker (follow_up)."""

    __slots__ = ("parked",)

    def __init__(self, data: Result, parked: _Parked) -> None:
        super().__init__(data)
        self.parked = parked


# workers that gave their result and are parked (or exiting)
_exiting: list[_Parked] = []


def finish() -> None:
    """Parent, once the reply is out: let the workers run() left parked go (closing our end
    of their pipe) and collect each within the grace; one that has not exited by then is
    killed (never waited for past it)."""
    while _exiting:
        p = _exiting.pop()
        if p.r >= 0:
            os.close(p.r)
        if not reap(p.pid):
            os.kill(p.pid, signal.SIGKILL)
            reap(p.pid)
            _killed(p.pid)


def on_kill(fn: Callable[[int], None]) -> None:
    """Parent: `fn(pid)` runs after this process has killed a worker (SIGKILL leaves it no
    cleanup of its own), to remove what such a worker makes in known places."""
    _on_kill.append(fn)


_on_kill: list[Callable[[int], None]] = []


def _killed(pid: int) -> None:
    for fn in _on_kill:
        with contextlib.suppress(Exception):  # best effort: the request's outcome stands
            fn(pid)


def follow_up(res: Result, deadline: float, what: str) -> Result | None:
    """Parent, after its reply: the follow-up line of the worker that gave `res` (then()),
    as an untrusted dict for the caller's strict parser, or None (none came within
    `deadline`, it was malformed, or `res` is not an Answer). Never raises."""
    parked = getattr(res, "parked", None)
    if not isinstance(parked, _Parked) or parked.r < 0:
        return None
    try:
        line, parked.rest = _read_line(parked.r, parked.rest, deadline, what)
        out = json.loads(line) if line else None
    except (UpcallError, ValueError):
        return None
    return out if isinstance(out, dict) else None


def reap(pid: int, grace: float = REAP_GRACE) -> bool:
    """Collect `pid` if it ends within `grace` seconds; never block longer. Waits on a pidfd
    (readable once the process has exited), not in waitpid."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return _collect(pid)
    try:
        select.select([fd], [], [], grace)
    finally:
        os.close(fd)
    return _collect(pid)


def _collect(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return bool(done)  # 0: stuck in the kernel; init reaps it once we exit


def _read_line(r: int, buf: bytes, deadline: float, what: str) -> tuple[bytes, bytes]:
    """Parent: (the worker's next line without its newline, what was read past it), or
    (what it wrote before EOF, b""). `buf`: what an earlier read left. Bounded in size and
    time."""
    data = bytearray(buf)
    end = time.monotonic() + deadline
    while True:
        end_of_line = data.find(b"\n")
        if 0 <= end_of_line <= RESULT_MAX:
            return bytes(data[:end_of_line]), bytes(data[end_of_line + 1 :])
        if len(data) > RESULT_MAX:
            raise WorkerProtocolError(f"{what} wrote more than {RESULT_MAX} bytes")
        left = end - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            raise DeadlineExceeded(f"{what} did not finish within {deadline:g}s")
        chunk = os.read(r, 65536)
        if not chunk:
            return bytes(data), b""
        data += chunk


def run(fn: Callable[[], Result], deadline: float, what: str, keep: tuple[int, ...] = ()) -> Result:
    """Parent: call fn() in a worker (which keeps only its result pipe and the fds in `keep`);
    its "ok" dict, or its error rebuilt as UpcallError. The dict is still untrusted: the
    caller parses it with the source's strict parser."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # worker
        os.close(r)
        _worker(fn, w, keep)
    os.close(w)
    return _result(pid, r, deadline, what)


def _result(pid: int, r: int, deadline: float, what: str) -> Result:
    """Parent: read the worker's result (bounded, by the deadline) and parse it. A worker
    that gave a result stays parked until finish(), after the reply; one that failed is
    killed now."""
    try:
        data, rest = _read_line(r, b"", deadline, what)
    except UpcallError:
        _kill(pid, r)
        raise
    parked = _Parked(pid, r, rest)
    try:
        out = parse(data, what)
    except WorkerProtocolError:
        _kill(pid, r)
        raise
    except UpcallError:
        _exiting.append(parked)  # the failure it reported: it parks as after a success
        raise
    _exiting.append(parked)
    return Answer(out, parked)


def _kill(pid: int, r: int) -> None:
    os.close(r)
    os.kill(pid, signal.SIGKILL)
    reap(pid)
    _killed(pid)


class Ready:
    """Handler: a worker forked BEFORE its request, so that the fork and `prepare` (the host
    side of the boundary: preload, the mech glue) are off the request's path. It waits for
    one `fn(plan)` from this handler, run as run() would run it.

    The plan travels pickled over a socketpair only this handler and its own child hold, from
    the privileged side to a worker that has not crossed yet: nothing of a caller's is
    unpickled. The caller's pidfd comes with it (SCM_RIGHTS) and becomes `plan.pidfd`; the
    worker then closes the socket, so it holds its result pipe and the pidfd only, as run()'s.

    Given `gated`, the worker keeps the socket until the handler opens the gate (go): its
    function does what it can ahead (wait_gate() marks where it must stop) and goes on only
    then; closed instead, it exits there. Only for a worker that never enters a caller (the
    gssproxy one), whose plan is given while an earlier step runs.
    """

    def __init__(self, prepare: Callable[[], None]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # worker
            os.close(r)
            ours.close()
            _ready_worker(prepare, theirs, w)
        theirs.close()
        os.close(w)
        self.pid, self._ctl, self._r = pid, ours, r
        self.used = False
        self._gated = False

    def run(self, fn: Callable[[Any], Result], plan: Any, deadline: float, what: str) -> Result:
        """Parent: hand over `fn(plan)` (plan.pidfd passed along if >= 0) and get its result."""
        self.give(fn, plan, what)
        return self.result(deadline, what)

    def result(self, deadline: float, what: str) -> Result:
        """Parent: the result of what give() handed over, as run() reads it (a gated one's
        gate opened first)."""
        self.go()
        r, self._r = self._r, -1
        return _result(self.pid, r, deadline, what)

    def give(
        self, fn: Callable[[Any], Result], plan: Any, what: str, *, gated: bool = False
    ) -> None:
        """Parent: hand over `fn(plan)`; it starts at once (result() collects it), up to its
        wait_gate() if `gated`."""
        assert not self.used
        if gated and getattr(plan, "pidfd", -1) >= 0:
            # a gated worker keeps a socket to its handler: never one that enters a caller
            raise ValueError("a worker that enters a caller cannot be gated")
        self.used = True
        self._gated = gated
        try:
            msg = _plan_message(fn, plan, gated)
            self._ctl.sendmsg([msg], fdpass.one(getattr(plan, "pidfd", -1)))
        except BaseException as e:
            self._gated = False
            self._ctl.close()
            _exiting.append(_Parked(self.pid, self._r))  # EOF makes it exit
            self._r = -1
            if isinstance(e, OSError):
                raise WorkerProtocolError(f"{what}: the prepared worker is gone") from None
            raise
        if not gated:
            self._ctl.close()
            # It starts at once, woken by the send (a sync wake-up: as often as not onto this
            # CPU, where it would wait until this handler blocks, with the other CPU idle)
            os.sched_yield()

    def go(self) -> None:
        """Parent: open a gated worker's gate (nothing for any other). A worker that is gone
        shows in its result (none)."""
        if not self._gated:
            return
        self._gated = False
        try:
            self._ctl.send(b"g")
        except OSError:
            pass
        finally:
            self._ctl.close()

    def alive(self) -> bool:
        """Parent: still there, waiting (it ends early only if its preparation gave up)."""
        try:
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def close(self) -> None:
        """Parent: not needed after all (never given a plan, or given one whose result is no
        longer wanted): EOF makes a waiting one exit; finish() collects it, or kills it."""
        if self._r < 0:
            return
        if not self.used or self._gated:  # EOF: it exits waiting for a plan, or at its gate
            self.used, self._gated = True, False
            self._ctl.close()
        _exiting.append(_Parked(self.pid, self._r))
        self._r = -1


PLAN_MAX = 64 * 1024
_gate: list[socket.socket] = []  # a gated worker's socket to its handler, until wait_gate()


def wait_gate() -> bool:
    """Worker: where a gated worker (Ready.give(gated=True)) waits for its handler's go:
    True to go on, False if the handler closed instead (not needed after all: the caller
    cleans up and exits). True at once for any other worker."""
    if not _gate:
        return True
    ctl = _gate.pop()
    try:
        go = ctl.recv(1)
    except OSError:
        go = b""
    ctl.close()
    return go == b"g"


def _ready_worker(prepare: Callable[[], None], ctl: socket.socket, w: int) -> None:
    """Worker: isolate, prepare, then wait (as long as the handler lives) for the one plan."""
    try:
        isolate(w, (ctl.fileno(),))
        failed: BaseException | None = None
        try:
            prepare()
        except BaseException as e:  # reported as the result once there is a request
            failed = e
        msg, anc, _flags, _ = ctl.recvmsg(PLAN_MAX, socket.CMSG_SPACE(4))
        if not msg:
            os._exit(0)  # the handler did not need us
        fds = fdpass.received(anc)
        fn, plan, gated = _plan_of(msg)  # from our own privileged parent: see Ready
        if gated:
            _gate.append(ctl)
        else:
            ctl.close()
        if fds:
            plan = dataclasses.replace(plan, pidfd=fds[0])

        def body() -> Result:
            if failed is not None:
                raise failed
            return fn(plan)

        _answer(w, _report(body))
    finally:
        os._exit(0)


def parse(data: bytes, what: str) -> Result:
    """Parent: the worker's bytes -> {"ok": ...} payload, or raise its error. Strict shape."""
    if not data:
        raise WorkerProtocolError(f"{what} died without a result")
    try:
        out = json.loads(data)
    except ValueError:
        raise WorkerProtocolError(f"{what} wrote a malformed result") from None
    if not isinstance(out, dict):
        raise WorkerProtocolError(f"{what} wrote a malformed result")
    if set(out) == {"ok"} and isinstance(out["ok"], dict):
        return out["ok"]
    err = out.get("error")
    if (
        set(out) - {"error", "trail"}
        or not isinstance(err, dict)
        or set(err) != {"reason", "message", "hint"}
    ):
        raise WorkerProtocolError(f"{what} wrote a malformed result")
    try:
        reason = Reason(err["reason"])
    except ValueError:
        raise WorkerProtocolError(f"{what} reported an unknown reason") from None
    message, hint = err["message"], err["hint"]
    if not isinstance(message, str) or not isinstance(hint, str):
        raise WorkerProtocolError(f"{what} wrote a malformed result")
    exc = rebuild(reason, message[:TEXT_MAX], hint[:TEXT_MAX])
    exc.trail = parse_trail(out.get("trail", []), what)
    raise exc
