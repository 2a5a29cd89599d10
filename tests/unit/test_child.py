"""child.py: real forked workers (no privilege needed) under a deadline, the 64 KiB cap, the
crash report, the strict parse of what a (possibly hostile) worker wrote, error rebuilding."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from upcall.errors import (
    CallerGone,
    CredentialError,
    DeadlineExceeded,
    Reason,
    UpcallError,
    WorkerProtocolError,
    rebuild,
)
from upcall.sources.base import Attempt
from upcall.worker import child


def _ok() -> dict[str, Any]:
    return {"token": "t", "n": 1}


def test_run_returns_the_ok_dict() -> None:
    assert child.run(_ok, 5.0, "w") == {"token": "t", "n": 1}


def test_worker_error_is_rebuilt_with_its_class_and_trail() -> None:
    def fail() -> dict[str, Any]:
        e = CallerGone("caller exited", hint="retry")
        e.trail = [Attempt("ccache", "failed", "gone", "caller-gone")]
        raise e

    with pytest.raises(CallerGone) as ei:
        child.run(fail, 5.0, "w")
    assert ei.value.message == "caller exited" and ei.value.hint == "retry"
    assert ei.value.trail == [Attempt("ccache", "failed", "gone", "caller-gone")]


def test_reason_without_own_class_comes_back_as_credential_error() -> None:
    def fail() -> dict[str, Any]:
        raise CredentialError("KDC down", reason=Reason.KDC_UNREACHABLE)

    with pytest.raises(CredentialError) as ei:
        child.run(fail, 5.0, "w")
    assert ei.value.reason is Reason.KDC_UNREACHABLE


def test_crash_reports_type_and_message_only() -> None:
    def crash() -> dict[str, Any]:
        raise ZeroDivisionError("division by zero")

    with pytest.raises(UpcallError) as ei:
        child.run(crash, 5.0, "w")
    assert ei.value.reason is Reason.INTERNAL
    assert ei.value.message == "ZeroDivisionError: division by zero"
    assert ei.value.hint == "a bug in cifs-upcall: please report this line"
    assert "Traceback" not in ei.value.message and ei.value.trail == []


def test_deadline_kills_the_worker() -> None:
    def hang() -> dict[str, Any]:
        time.sleep(30)
        return {}

    start = time.monotonic()
    with pytest.raises(DeadlineExceeded) as ei:
        child.run(hang, 0.3, "slow worker")
    assert time.monotonic() - start < 3
    assert ei.value.message == "slow worker did not finish within 0.3s"


def test_worker_that_closes_the_pipe_and_lingers_is_killed() -> None:
    def linger() -> dict[str, Any]:
        os.closerange(3, 4096)  # the pipe too: the parent sees EOF without a result
        time.sleep(30)
        return {}

    start = time.monotonic()
    with pytest.raises(WorkerProtocolError) as ei:
        child.run(linger, 5.0, "w")
    assert "died without a result" in ei.value.message
    assert time.monotonic() - start < 3


def test_worker_dying_silently_is_a_protocol_error() -> None:
    def die() -> dict[str, Any]:
        os._exit(3)

    with pytest.raises(WorkerProtocolError, match="w died without a result"):
        child.run(die, 5.0, "w")


def test_result_over_64k_is_refused() -> None:
    def big() -> dict[str, Any]:
        return {"x": "a" * (child.RESULT_MAX + 10)}

    with pytest.raises(WorkerProtocolError) as ei:
        child.run(big, 5.0, "w")
    assert ei.value.message == f"w wrote more than {child.RESULT_MAX} bytes"


def test_result_just_under_the_cap_passes() -> None:
    n = child.RESULT_MAX - len(json.dumps({"ok": {"x": ""}}))

    def fits() -> dict[str, Any]:
        return {"x": "a" * n}

    assert child.run(fits, 5.0, "w") == {"x": "a" * n}


# ---- the worker side, in-process -------------------------------------------------------------


def test_report_clips_message_and_hint() -> None:
    def fail() -> dict[str, Any]:
        raise CredentialError("m" * 5000, hint="h" * 5000)

    out = json.loads(child._report(fail))
    assert len(out["error"]["message"]) == child.TEXT_MAX
    assert len(out["error"]["hint"]) == child.TEXT_MAX
    assert out["error"]["reason"] == "no-credentials" and out["trail"] == []


def test_report_of_an_unserialisable_result() -> None:
    def odd() -> dict[str, Any]:
        return {"x": object()}

    with pytest.raises(UpcallError) as ei:
        child.parse(child._report(odd), "w")
    assert ei.value.reason is Reason.INTERNAL and ei.value.message == "unserialisable result"


def test_report_catches_base_exceptions() -> None:
    def bye() -> dict[str, Any]:
        raise SystemExit(4)

    out = json.loads(child._report(bye))
    assert out["error"]["message"] == "SystemExit: 4"


def test_report_truncates_to_one_past_the_cap() -> None:
    def big() -> dict[str, Any]:
        return {"x": "a" * (2 * child.RESULT_MAX)}

    assert len(child._report(big)) == child.RESULT_MAX + 1


def test_worker_writes_the_report_and_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    class Exited(Exception):
        pass

    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise Exited

    monkeypatch.setattr(child.os, "_exit", fake_exit)
    isolated: list[tuple[int, tuple[int, ...]]] = []
    # in-process here: isolate() would close pytest's own fds (test_worker_holds_only_... runs
    # the real one in a fork)
    monkeypatch.setattr(child, "isolate", lambda w, keep=(): isolated.append((w, keep)))
    r, w = os.pipe()
    got: list[bytes] = []

    def parent() -> None:  # reads the result line, then lets the parked worker go
        got.append(child._read_line(r, b"", 10, "w")[0])
        os.close(r)

    reader = threading.Thread(target=parent)
    reader.start()
    with pytest.raises(Exited):
        child._worker(_ok, w, (7,))  # returns only once the reader has closed its end
    reader.join(10)
    os.close(w)  # os._exit would have
    assert isolated == [(w, (7,))]
    assert codes == [0]
    assert child.parse(got[0], "w") == _ok()


def test_clip_reprs_non_strings() -> None:
    assert child._clip(42) == "42" and child._clip("x" * 3000) == "x" * child.TEXT_MAX


# ---- parse: what a hostile worker may write ------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "died without a result"),
        (b"{not json", "malformed result"),
        (b"[1, 2]", "malformed result"),
        (b'{"ok": [1]}', "malformed result"),
        (b'{"ok": {}, "extra": 1}', "malformed result"),
        (b'{"error": "x"}', "malformed result"),
        (b'{"error": {"reason": "no-credentials", "message": "m"}}', "malformed result"),
        (
            b'{"error": {"reason": "no-credentials", "message": "m", "hint": ""}, "x": 1}',
            "malformed result",
        ),
        (b'{"error": {"reason": "made-up", "message": "m", "hint": ""}}', "unknown reason"),
        (b'{"error": {"reason": "no-credentials", "message": 1, "hint": ""}}', "malformed result"),
        (
            b'{"error": {"reason": "no-credentials", "message": "m", "hint": ""}, "trail": [1]}',
            "malformed trail entry",
        ),
        (
            b'{"error": {"reason": "no-credentials", "message": "m", "hint": ""}, "trail": {}}',
            "malformed trail",
        ),
    ],
)
def test_parse_refuses_malformed_results(data: bytes, message: str) -> None:
    with pytest.raises(WorkerProtocolError) as ei:
        child.parse(data, "the worker")
    assert ei.value.message.startswith("the worker ") and message in ei.value.message


def test_parse_rebuilds_a_forged_reason_class_but_clips_text() -> None:
    doc = {"error": {"reason": "deadline-exceeded", "message": "m" * 9000, "hint": "h"}}
    with pytest.raises(DeadlineExceeded) as ei:
        child.parse(json.dumps(doc).encode(), "w")
    assert len(ei.value.message) == child.TEXT_MAX and ei.value.hint == "h"


def test_parse_ok_payload() -> None:
    assert child.parse(b'{"ok": {"a": 1}}', "w") == {"a": 1}


def test_rebuild_maps_every_reason_to_its_owner() -> None:
    assert type(rebuild(Reason.CALLER_GONE, "m", "h")) is CallerGone
    assert type(rebuild(Reason.INTERNAL, "m", "h")) is UpcallError
    e = rebuild(Reason.S4U2SELF_REFUSED, "m", "h")
    assert type(e) is CredentialError and e.reason is Reason.S4U2SELF_REFUSED
    for reason in Reason:
        assert rebuild(reason, "m", "h").reason is reason


# ---- reap ----------------------------------------------------------------------------------


def test_reap_collects_an_exited_child() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    assert child.reap(pid, 2.0)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_reap_of_an_already_reaped_pid_is_done() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert child.reap(pid, 0.1)


def test_reap_gives_up_on_a_child_that_does_not_exit() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)  # until the parent closes its end
        os._exit(0)
    os.close(r)
    try:
        start = time.monotonic()
        assert not child.reap(pid, 0.1)
        assert time.monotonic() - start < 1.5
    finally:
        os.close(w)
        os.waitpid(pid, 0)


def test_worker_holds_only_its_result_pipe_and_what_it_keeps(tmp_path: Path) -> None:
    # A worker may run the caller's code (her krb5 plugins): it must not inherit the client's
    # connection, the daemon's channels or a terminal to write into.
    stray = os.open(str(tmp_path), os.O_RDONLY)  # stands for the client's socket, a pipe, ...
    kept = os.open(str(tmp_path), os.O_RDONLY)  # stands for the caller's pidfd
    try:

        def fds() -> dict[str, object]:
            listing = sorted(int(n) for n in os.listdir("/proc/self/fd"))
            null = os.path.realpath("/proc/self/fd/1")
            return {"fds": listing, "stdout": null}

        out = child.run(fds, 10, "probe", keep=(kept,))
    finally:
        os.close(stray)
        os.close(kept)
    assert stray not in out["fds"] and kept in out["fds"]
    assert out["stdout"] == "/dev/null"
    assert len(out["fds"]) <= 6  # 0-2, the result pipe, the kept fd, listdir's own


# ---- workers forked ahead (Ready: prepared, waiting for a plan) -----------------------------


@dataclasses.dataclass(frozen=True)
class _Plan:
    pidfd: int
    word: str


def _probe(plan: _Plan) -> dict[str, Any]:
    """Runs in a Ready worker: what it holds, and proof of what it was given."""
    listing = sorted(int(n) for n in os.listdir("/proc/self/fd"))
    target = os.readlink(f"/proc/self/fd/{plan.pidfd}") if plan.pidfd >= 0 else ""
    return {"fds": listing, "word": plan.word, "pidfd": plan.pidfd, "target": target,
            "prepared": os.environ.get("PREPARED_BY_TEST", "")}  # fmt: skip


def _prepare() -> None:
    os.environ["PREPARED_BY_TEST"] = "yes"


def test_ready_worker_runs_the_plan_it_is_given_with_the_fd_it_is_passed(tmp_path: Path) -> None:
    ready = child.Ready(_prepare)  # forked before the fd below exists: it cannot inherit it
    stray = os.open(str(tmp_path), os.O_RDONLY)
    passed = os.open(str(tmp_path / "."), os.O_RDONLY)
    try:
        out = ready.run(_probe, _Plan(passed, "hello"), 10, "ready probe")
    finally:
        os.close(stray)
        os.close(passed)
    assert out["word"] == "hello" and out["prepared"] == "yes"
    assert out["target"] == str(tmp_path)  # the fd came over SCM_RIGHTS, renumbered in plan
    assert out["pidfd"] in out["fds"] and stray not in out["fds"]
    assert len(out["fds"]) <= 6  # 0-2, its result pipe, the passed fd, listdir's own
    child.finish()


def test_ready_worker_without_an_fd_and_one_that_is_not_needed() -> None:
    ready = child.Ready(_prepare)
    assert ready.run(_probe, _Plan(-1, "x"), 10, "w")["target"] == ""
    unused = child.Ready(_prepare)
    pid = unused.pid
    unused.close()  # EOF before any plan: it exits without running anything
    child.finish()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # collected by finish()


def test_ready_worker_reports_a_failed_preparation_as_its_result() -> None:
    def broken() -> None:
        raise CredentialError("mech glue did not load", hint="reinstall")

    ready = child.Ready(broken)
    with pytest.raises(CredentialError, match="mech glue did not load"):
        ready.run(_probe, _Plan(-1, "x"), 10, "w")


def _hang(plan: _Plan) -> dict[str, Any]:
    time.sleep(30)
    return {}


def test_ready_worker_deadline_counts_from_the_plan() -> None:
    ready = child.Ready(_prepare)
    time.sleep(0.5)  # waiting for a plan does not count
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        ready.run(_hang, _Plan(-1, "x"), 0.3, "slow ready worker")
    assert time.monotonic() - start < 3


def test_ready_worker_given_an_unpicklable_function_is_let_go() -> None:
    ready = child.Ready(_prepare)
    with pytest.raises(AttributeError):
        ready.run(lambda plan: {}, _Plan(-1, "x"), 10, "w")
    child.finish()
    with pytest.raises(ChildProcessError):
        os.waitpid(ready.pid, os.WNOHANG)


@dataclasses.dataclass(frozen=True)
class _Marked:
    marker: str
    pidfd: int = -1


def _mark_before(marker: str) -> None:
    Path(marker + ".before").write_text("x")


def _mark_after(plan: _Marked) -> dict[str, Any]:
    Path(plan.marker + ".after").write_text("x")
    return {"passed": True}


def _ready_and_prepared(tmp_path: Path) -> tuple[child.Ready, str]:
    """A Ready worker that has prepared (it wrote its `.before` marker) and now waits."""
    marker = str(tmp_path / "m")
    ready = child.Ready(functools.partial(_mark_before, marker))
    deadline = time.monotonic() + 5
    while not Path(marker + ".before").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return ready, marker


def test_ready_worker_waits_after_preparing_until_it_is_given_its_plan(tmp_path: Path) -> None:
    ready, marker = _ready_and_prepared(tmp_path)
    time.sleep(0.1)
    assert Path(marker + ".before").exists() and not Path(marker + ".after").exists()
    assert ready.run(_mark_after, _Marked(marker), 10, "ready") == {"passed": True}
    assert Path(marker + ".after").exists()
    child.finish()


def test_closed_ready_worker_never_runs_a_plan(tmp_path: Path) -> None:
    ready, marker = _ready_and_prepared(tmp_path)
    ready.close()
    child.finish()  # collected (it exits at EOF), within the grace
    with pytest.raises(ChildProcessError):
        os.waitpid(ready.pid, os.WNOHANG)
    assert not Path(marker + ".after").exists()


def test_ready_worker_given_its_plan_early_runs_on_its_own(tmp_path: Path) -> None:
    ready, marker = _ready_and_prepared(tmp_path)
    ready.give(_mark_after, _Marked(marker), "ready")
    deadline = time.monotonic() + 5
    while not Path(marker + ".after").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert Path(marker + ".after").exists()  # before anyone asked for the result
    assert ready.result(10, "ready") == {"passed": True}
    child.finish()


def test_a_worker_that_gave_its_result_is_collected_after_the_reply() -> None:
    def linger_after() -> dict[str, Any]:
        return {"ok": 1}

    assert child.run(linger_after, 10, "w") == {"ok": 1}
    child.finish()
    assert child._exiting == []


def _give_up() -> None:
    os._exit(0)


def test_a_ready_worker_that_gave_up_preparing_is_not_alive() -> None:
    ready = child.Ready(_give_up)
    deadline = time.monotonic() + 5
    while ready.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not ready.alive()
    ready.close()
    child.finish()
    waiting = child.Ready(_prepare)
    assert waiting.alive()
    waiting.close()
    child.finish()


def test_a_worker_that_gave_its_result_stays_parked_until_finish() -> None:
    """Its teardown must not take a CPU from the request: it waits until after the reply."""
    assert child.run(lambda: {"ok": 1}, 10, "w") == {"ok": 1}
    [parked] = child._exiting
    pid = parked.pid
    time.sleep(0.2)
    assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # still there, parked
    start = time.monotonic()
    child.finish()
    assert time.monotonic() - start < child.REAP_GRACE  # it left as soon as it was let go
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_parked_worker_leaves_when_its_parent_is_gone(tmp_path: Path) -> None:
    """A handler that dies without finish(): the pipe's read end closes with it, and the
    parked worker exits on its own (no orphan waits forever)."""
    out = tmp_path / "grandchild"
    mid = os.fork()
    if mid == 0:  # the parent of the worker, which exits without finish()
        try:
            child.run(lambda: {"ok": 1}, 10, "w")
            [parked] = child._exiting
            out.write_text(str(parked.pid))
        finally:
            os._exit(0)
    os.waitpid(mid, 0)
    pid = int(out.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"parked worker {pid} outlived its parent")


def test_only_the_first_line_of_a_result_counts() -> None:
    """A (hostile) worker that writes on after its result line changes nothing."""
    r, w = os.pipe()
    try:
        os.write(w, b'{"ok": {"a": 1}}\n{"ok": {"a": 2}}\n' + b"x" * 1000)
        line, rest = child._read_line(r, b"", 5, "w")
        assert child.parse(line, "w") == {"a": 1} and rest.startswith(b'{"ok": {"a": 2}}\n')
    finally:
        os.close(r)
        os.close(w)


def _ahead_then_gate(plan: _Marked) -> dict[str, Any]:
    Path(plan.marker + ".ahead").write_text("x")
    if not child.wait_gate():
        os._exit(0)
    Path(plan.marker + ".after").write_text("x")
    return {"passed": True}


def _wait_for(path: str) -> bool:
    deadline = time.monotonic() + 5
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return Path(path).exists()


def test_a_gated_worker_gets_as_far_as_its_gate_and_goes_on_when_asked(tmp_path: Path) -> None:
    ready, marker = _ready_and_prepared(tmp_path)
    ready.give(_ahead_then_gate, _Marked(marker), "gated", gated=True)
    assert _wait_for(marker + ".ahead")
    time.sleep(0.1)
    assert not Path(marker + ".after").exists()  # waiting at the gate
    assert ready.result(10, "gated") == {"passed": True}  # result() opened it
    assert Path(marker + ".after").exists()
    child.finish()


def test_a_gated_worker_let_go_stops_at_its_gate(tmp_path: Path) -> None:
    ready, marker = _ready_and_prepared(tmp_path)
    ready.give(_ahead_then_gate, _Marked(marker), "gated", gated=True)
    assert _wait_for(marker + ".ahead")
    ready.close()
    child.finish()
    with pytest.raises(ChildProcessError):
        os.waitpid(ready.pid, os.WNOHANG)  # gone, collected
    assert not Path(marker + ".after").exists()


def _with_then() -> dict[str, Any]:
    child.then(lambda: {"later": 42})
    child.then(lambda: None)  # nothing to add: a "null" line, so no one waits for it
    child.then(lambda: 1 // 0)  # a failing one: "null" too
    return {"first": 1}


def test_a_follow_up_line_comes_after_the_result_and_only_for_its_worker() -> None:
    res = child.run(_with_then, 10, "w")
    assert res == {"first": 1}
    assert child.follow_up(res, 5, "w") == {"later": 42}
    start = time.monotonic()
    assert child.follow_up(res, 5, "w") is None  # "null": at once, not at the bound
    assert child.follow_up(res, 5, "w") is None
    assert time.monotonic() - start < 1
    assert child.follow_up(res, 0.2, "w") is None  # no more lines: EOF never comes, time does
    assert child.follow_up({"first": 1}, 5, "w") is None  # not a worker's Answer
    child.finish()


def test_a_killed_worker_is_cleaned_up_after_by_the_on_kill_hooks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGKILL leaves a worker no cleanup of its own: the parent runs the hooks with its pid
    (and a failing hook changes nothing)."""
    seen: list[int] = []

    def broken(pid: int) -> None:
        raise OSError("hook failed")

    monkeypatch.setattr(child, "_on_kill", [broken, seen.append])
    with pytest.raises(DeadlineExceeded):
        child.run(_sleep_forever, 0.2, "slow worker")
    assert len(seen) == 1 and seen[0] > 0
    with pytest.raises(ChildProcessError):
        os.waitpid(seen[0], os.WNOHANG)  # killed and collected before the hooks ran
    assert child.run(lambda: {"ok": 1}, 10, "w") == {"ok": 1}
    child.finish()
    assert len(seen) == 1  # a worker that answered and left is not "killed"


def _sleep_forever() -> dict[str, Any]:
    time.sleep(60)
    return {}


def test_a_worker_that_enters_a_caller_is_never_gated(tmp_path: Path) -> None:
    """Gated, a worker holds a socket to its handler until go: only one that never enters a
    caller (the gssproxy worker) may; one given a caller's pidfd is refused before it runs."""
    ready, marker = _ready_and_prepared(tmp_path)
    fd = os.open(str(tmp_path), os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="cannot be gated"):
            ready.give(_ahead_then_gate, _Marked(marker, pidfd=fd), "gated", gated=True)
    finally:
        os.close(fd)
    ready.close()
    child.finish()
    assert not Path(marker + ".ahead").exists()


def _work(plan: object) -> dict[str, Any]:
    """A worker function as a plan's message names it (pickled by reference)."""
    return {}


def test_rehearse_writes_nothing_and_never_raises(capfd: pytest.CaptureFixture[str]) -> None:
    """A prepared worker's rehearsal: whatever its function does (a token, a failure, a
    crash) and whatever its plan is (even unpicklable), nothing comes out of it."""
    from upcall.sources.base import SourceKind, rehearsal_result

    def crash() -> dict[str, Any]:
        raise RuntimeError("boom")

    for fn in (functools.partial(rehearsal_result, SourceKind.PROXY),
               functools.partial(rehearsal_result, SourceKind.CCACHE, True), crash):  # fmt: skip
        assert child.rehearse(_work, threading.Lock(), fn) is None
        assert child.rehearse(_work, {"plan": 1}, fn) is None
    assert capfd.readouterr() == ("", "")


def test_rehearsed_parses_as_a_workers_result() -> None:
    """The handler's rehearsal reads results through parse(): a token as an ok dict, a
    failure rebuilt with its class, reason and trail."""
    from upcall.sources.base import SourceKind, SourceToken, rehearsal_result

    ok = child.rehearsed(_work, "plan", functools.partial(rehearsal_result, SourceKind.PROXY), "w")
    tok = SourceToken.from_json(ok["token"], frozenset({SourceKind.PROXY}))
    assert tok.impersonated and tok.principal == "rehearsal@INVALID" and len(tok.session_key) == 32
    with pytest.raises(CredentialError) as e:
        fail = functools.partial(rehearsal_result, SourceKind.CCACHE, True)
        child.rehearsed(_work, "plan", fail, "w")
    assert e.value.reason is Reason.NO_CREDENTIALS and e.value.trail[0].outcome == "failed"
