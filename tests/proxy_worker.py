"""Run one gssproxy worker (upcall.sources.proxy.run) in a fresh process, as the warm daemon
will: `python -m tests.proxy_worker` with a JSON plan on stdin, the worker's result (or its
error) as JSON on stdout. The blob a worker hands back goes into the next one's plan, so each
call starts with nothing of the previous one's GSSAPI state but that blob."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_worker(plan: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """Parent side (the test): {"ok": result} or {"error": {...}} from a fresh interpreter."""
    p = subprocess.run(
        [sys.executable, "-m", "tests.proxy_worker"],
        input=json.dumps(plan), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    out: dict[str, Any] = json.loads(p.stdout)
    return out


def main() -> None:
    from upcall.errors import UpcallError
    from upcall.sources import proxy
    from upcall.worker import child

    d = json.load(sys.stdin)
    cached = d.pop("cached", None)
    plan = proxy.ProxyPlan(
        d["host"], None, False, d["principal"], d["socket"], krb5_config=d["krb5_config"],
        cached=bytes.fromhex(cached) if cached else None, export_cred=True,
    )  # fmt: skip
    try:
        res = child.run(partial(proxy.run, plan), 20, plan.label)
        # the credential for the daemon's cache comes after the result (child.then), as
        # the handler reads it after its reply
        out: dict[str, Any] = {"ok": {**res, **(child.follow_up(res, 5, plan.label) or {})}}
        child.finish()
    except UpcallError as e:
        out = {"error": {"reason": e.reason.value, "message": e.message}, "trail": e.trail}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
