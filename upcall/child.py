"""Run a function in a forked child under a deadline; get back a small JSON result.

Children do the dangerous parts (foreign namespaces, dropped privileges, gssproxy's interposer
environment) so the parent stays root, in the host namespaces, with a clean environment. A
child that overruns is killed: the helper never keeps the kernel waiting past the deadline.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

from .errors import DeadlineExceeded, Reason, UpcallError

Result = dict[str, Any]


def run(fn: Callable[[], Result], deadline: float, what: str) -> Result:
    """Call fn() in a child; return its dict. Errors come back as UpcallError in the parent."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            try:
                out: Result = {"ok": fn()}
            except UpcallError as e:
                out = {"error": {"reason": e.reason.value, "message": e.message, "hint": e.hint}}
                out["trail"] = e.trail
            except BaseException as e:
                import traceback  # only on this path: it costs 5 ms to import

                out = {
                    "error": {
                        "reason": Reason.INTERNAL.value,
                        "message": repr(e),
                        "hint": traceback.format_exc(limit=4),
                    }
                }
            data = json.dumps(out).encode()
            view = memoryview(data)
            while view:
                n = os.write(w, view)
                view = view[n:]
        finally:
            os._exit(0)
    os.close(w)
    chunks: list[bytes] = []
    try:
        end = time.monotonic() + deadline
        while True:
            left = end - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise DeadlineExceeded(f"{what} did not finish within {deadline:g}s")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    if not chunks:
        raise UpcallError(f"{what} died without a result", reason=Reason.INTERNAL)
    out = json.loads(b"".join(chunks))
    if "error" in out:
        err = out["error"]
        exc = UpcallError(err["message"], hint=err["hint"], reason=Reason(err["reason"]))
        exc.trail = out.get("trail", [])
        raise exc
    result: Result = out["ok"]
    return result
