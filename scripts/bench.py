"""Host benchmark: cifs-upcall against cifs-utils' cifs.upcall, same requests, interleaved.

Run as root: /opt/cifs-upcall/bin/python scripts/bench.py [-n 20]
Prints figures; asserts nothing (speed is measured here, not in tests).

What is compared (this kernel has no cifs.ko; vm/ measures the real path through the kernel):
  startup   `cifs-upcall --version` vs `cifs.upcall -v`: interpreter + import cost.
  own-ticket alice has a TGT and a cached cifs/ ticket in a FILE ccache named only in her
            process's environment; both helpers enter her namespaces, find the ccache and make
            the token.
            - cifs.upcall runs through the real request-key on a `user` key carrying the cifs
              description (it does not check the key type), and instantiates it;
            - cifs-upcall refuses such keys by design (origin check), so it runs the same
              description with --dry-run: everything but the two keyring syscalls.
            Both timings include process creation; request-key's own exec adds ~1 ms to
            cifs.upcall's figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.components.samba import SambaLab, can_run_lab, running_lab
from tests.upcall_driver import caller, description

OURS = "/opt/cifs-upcall/bin/cifs-upcall"
THEIRS = "/usr/sbin/cifs.upcall"
CONF = Path("/etc/request-key.d/cifs-upcall-bench.conf")


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return time.perf_counter() - t, res


def row(name: str, ours: list[float], theirs: list[float]) -> str:
    mo, mt = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    return f"{name:<12} {mo:10.1f} {mt:12.1f} {mo / mt if mt else float('inf'):8.2f}x"


def bench(lab: SambaLab, n: int) -> int:
    alice = lab.add_user("alice", 23001)
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=lab.base / "tmp"))
    work.chmod(0o1777)
    cc = f"FILE:{work}/cc.alice"
    lab.kinit(alice, cc)
    env = lab.env(KRB5CCNAME=cc)
    lab.run(["kvno", f"cifs/{lab.fqdn}"], user="alice", env=env)  # cache the service ticket
    CONF.write_text(f"create user ver=0x2;* * {THEIRS} %k\n")
    # cifs.upcall reads krb5.conf from the caller's mount namespace: the lab's has the realm.
    lab_conf = Path(f"/etc/netns/{lab.ns}/krb5.conf")
    times: dict[str, tuple[list[float], list[float]]] = {
        "startup": ([], []),
        "own-ticket": ([], []),
    }
    try:
        with caller(lab, "alice", env) as pid:
            desc = description(lab, alice.uid, pid)
            for i in range(n):
                # Interleaved, alternating who goes first, so drift hits both equally.
                for first in (True, False) if i % 2 == 0 else (False, True):
                    if first:
                        t, r = timed([OURS, "--version"])
                        times["startup"][0].append(t)
                        t, r = timed([OURS, "-k", str(lab.krb5_conf), "--dry-run", desc, "--json"])
                        if '"outcome": "ok"' not in r.stdout:
                            print(f"cifs-upcall failed: {r.stdout}{r.stderr}", file=sys.stderr)
                            return 1
                        times["own-ticket"][0].append(t)
                    else:
                        t, r = timed([THEIRS, "-v"])
                        times["startup"][1].append(t)
                        tag = f"{desc};bench={os.getpid()}.{i}"
                        t, r = timed(["keyctl", "session", "-", "keyctl", "request2", "user", tag,
                                      "x", "@s"])  # fmt: skip
                        if r.returncode != 0:
                            print(f"cifs.upcall failed: {r.stderr}", file=sys.stderr)
                            return 1
                        times["own-ticket"][1].append(t)
    finally:
        CONF.unlink(missing_ok=True)
        lab_conf.unlink(missing_ok=True)
    print(f"\nmedian wall time per call, n={n}, interleaved; load average {os.getloadavg()[0]:.2f}")
    print(f"{'case':<12} {'cifs-upcall':>10} {'cifs.upcall':>12} {'ratio':>8}")
    for name, (ours, theirs) in times.items():
        print(row(name, ours, theirs))
    print(f"{'':<12} {'ms':>10} {'ms':>12}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=20, help="rounds (default 20)")
    a = ap.parse_args()
    why = can_run_lab()
    if why:
        print(f"bench: {why}", file=sys.stderr)
        return 2
    with running_lab(
        Path(f"/tmp/cifs-upcall-bench-{os.getpid()}"), ns=f"cuplab-{os.getpid()}"
    ) as lab:
        # cifs.upcall has no -k that survives into the caller's namespace the way ours does:
        # give the namespace a krb5.conf (ip netns exec binds /etc/netns/NS/* over /etc).
        Path(f"/etc/netns/{lab.ns}/krb5.conf").write_text(lab.krb5_conf_text())
        return bench(lab, a.n)


if __name__ == "__main__":
    sys.exit(main())
