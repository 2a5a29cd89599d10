#!/usr/bin/env python3
"""vm/guest/tests/bench.py: upcall benchmark, run inside the guest (vm/run --bench).

Prints figures; it is not a timed test and never fails the run.

For each helper (the stock cifs.upcall and ours) and each path, the same requests, interleaved
(stock/ours order alternates every round), after one warm-up round per helper:

  own    alice, with her own TGT and the cifs/dc.lab.test service ticket already in her ccache,
         first access to a fresh multiuser mount (one upcall for uid 2001);
  proxy  bob, with no ticket at all, first access through gssproxy impersonation
         (stock: GSS_USE_PROXY=yes; ours: local-first policy, root-only gssproxy socket);
         gssproxy's impersonator ccache is warm after the warm-up round, as on a running host.

Wall time per upcall is measured around the helper process by a wrapper in the request-key line
(bash $EPOCHREALTIME just before and after the helper; interpreter start-up is inside the
interval). KDC requests per access are counted from the Samba KDC's log (AS-REQ / TGS-REQ lines
written while the access ran; the root mount's own upcall happens before the window opens).
Under TCG (no KVM) every figure is several times slower than on hardware; the ratio is the point.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

TESTS = Path(os.environ.get("TESTS", "/vm/tests"))
WORK = Path("/var/lib/vm-bench")  # not /run: noexec, request-key cannot run the wrapper
UPCALL_LOG = WORK / "upcalls.log"
KDC_LOG = Path("/var/log/samba/log.samba")
RKCONF = Path("/etc/request-key.d/cifs.spnego.conf")
STOCK = "/usr/sbin/cifs.upcall"
OURS = "/usr/sbin/cifs-upcall"  # the cifs-upcall package (run.sh installs it)
SHARE = "//dc.lab.test/share"
MNT = "/mnt/bench"
OPTS = "sec=krb5,vers=3.1.1,noperm,cache=none,multiuser,user=CLIENT$"
UIDS = {"alice": 2001, "bob": 2002}
KDC_REQ = re.compile(r"\b(AS-REQ|TGS-REQ)\b.* from ")

WRAPPER = r"""#!/bin/bash
# request-key handler wrapper: time the real helper (argv) and log: start end rc description
desc=$(keyctl rdescribe "${@: -1}" 2>/dev/null)
t0=$EPOCHREALTIME
"$@"
rc=$?
t1=$EPOCHREALTIME
printf '%s %s %s %s\n' "$t0" "$t1" "$rc" "$desc" >> /var/lib/vm-bench/upcalls.log
exit $rc
"""


def sh(cmd: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, shell=True, text=True, capture_output=True, check=check)


def as_user(user: str, cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = f"env -i PATH=/usr/bin:/bin HOME=/home/{user} USER={user}"
    return subprocess.run(
        ["timeout", "90", "runuser", "-u", user, "--", *env.split(), "bash", "-c", cmd],
        text=True,
        capture_output=True,
        input=stdin,
    )


def wire(helper: str, path: str) -> None:
    """request-key line for helper/path, behind the timing wrapper."""
    wrapper = WORK / "timed-upcall"
    if helper == "stock":
        cmd = f"/usr/bin/env GSS_USE_PROXY=yes {STOCK}" if path == "proxy" else STOCK
    else:
        cmd = OURS
    RKCONF.write_text(f"create cifs.spnego * * {wrapper} {cmd} %k\n")


def setup() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    w = WORK / "timed-upcall"
    w.write_text(WRAPPER)
    w.chmod(0o755)
    UPCALL_LOG.write_text("")
    # Both gssproxy services at once: the stock one matches program=cifs.upcall on the default
    # socket, ours listens on its own root-only socket; switching helpers = one request-key line.
    sh("rm -f /etc/gssproxy/5*-vm-*.conf")
    sh(f"install -m 644 {TESTS}/helpers/stock-gssproxy.conf /etc/gssproxy/50-vm-stock.conf")
    sh(f"install -m 644 {TESTS}/helpers/ours-gssproxy.conf /etc/gssproxy/51-vm-ours.conf")
    sh("install -d -m 700 /run/gssproxy/cifs")
    sh(
        "mkdir -p /etc/cifs-upcall && install -m 644 "
        f"{TESTS}/helpers/ours-policy-local-first.yaml /etc/cifs-upcall/policy.yaml"
    )
    sh("systemctl restart gssproxy", check=True)
    Path(MNT).mkdir(parents=True, exist_ok=True)
    sh("rm -f /tmp/krb5cc_*")
    pw = Path("/root/vm/alice.pw").read_text()
    r = as_user("alice", "kinit alice@LAB.TEST >/dev/null", stdin=pw)
    if r.returncode:
        raise SystemExit(f"bench: alice kinit failed: {r.stderr}")


def kdc_count() -> tuple[int, int]:
    try:
        text = KDC_LOG.read_text(errors="replace")
    except OSError:
        return (-1, -1)
    as_n = tgs_n = 0
    for line in text.splitlines():
        m = KDC_REQ.search(line)
        if m:
            if m.group(1) == "AS-REQ":
                as_n += 1
            else:
                tgs_n += 1
    return as_n, tgs_n


def one(helper: str, path: str) -> dict[str, Any]:
    """Fresh mount, then one user's first access; returns the measured upcall."""
    user = "alice" if path == "own" else "bob"
    uid = UIDS[user]
    sh(f"umount -l {MNT}")
    sh(
        "keyctl clear %:.cifs_spnego 2>/dev/null; "
        "kr=$(awk '$9 ~ /^.cifs_spnego/ {print $1}' /proc/keys | head -1); "
        '[ -n "$kr" ] && keyctl clear 0x$kr'
    )
    wire(helper, path)
    m = sh(f"timeout 120 mount -t cifs {SHARE} {MNT} -o '{OPTS}'")
    res = {
        "helper": helper,
        "path": path,
        "ok": False,
        "upcall_s": None,
        "access_s": None,
        "as_req": None,
        "tgs_req": None,
        "error": "",
    }
    if m.returncode:
        res["error"] = f"mount failed: {m.stderr.strip()[:200]}"
        return res
    time.sleep(0.3)  # let the KDC flush the mount's own log lines before the window opens
    KDC_LOG.write_text("")
    mark = len(UPCALL_LOG.read_text().splitlines())
    t0 = time.monotonic()
    a = as_user(user, f"ls {MNT} >/dev/null")
    res["access_s"] = time.monotonic() - t0
    time.sleep(0.3)
    res["as_req"], res["tgs_req"] = kdc_count()
    lines = UPCALL_LOG.read_text().splitlines()[mark:]
    mine = [ln for ln in lines if f"creduid=0x{uid:x};" in ln]
    if mine:
        t_start, t_end, rc, *_ = mine[-1].split(" ", 3)
        res["upcall_s"] = float(t_end) - float(t_start)
        res["upcall_rc"] = int(rc)
    if helper == "ours":
        res["self_ms"] = ours_self_ms(uid)
    res["ok"] = a.returncode == 0
    if not res["ok"]:
        res["error"] = f"access failed: {a.stderr.strip()[:200]}"
    sh(f"umount -l {MNT}")
    return res


def ours_self_ms(uid: int) -> float | None:
    """The ms= our helper logged for its latest upcall for uid (its own view, after start-up)."""
    j = sh("journalctl -q -t cifs-upcall -n 20 -o cat").stdout.splitlines()
    for line in reversed(j):
        m = re.search(r"\bms=(\d+)", line)
        if f" uid={uid} " in line and m:
            return float(m.group(1))
    return None


def startup_ms(cmd: str, n: int = 5) -> float | None:
    """Median wall time of a command (interpreter start-up, imports) in this guest."""
    xs = []
    for _ in range(n):
        t0 = time.monotonic()
        if subprocess.run(cmd, shell=True, capture_output=True).returncode != 0:
            return None
        xs.append((time.monotonic() - t0) * 1000)
    return statistics.median(xs)


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt_s(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1000:.0f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    helpers = ["stock", "ours"] if Path(OURS).exists() else ["stock"]
    if "ours" not in helpers:
        print(f"bench: {OURS} is not installed; measuring the stock helper only")
    setup()
    results = []
    print("bench: warm-up (not counted)")
    for h in helpers:
        for p in ("own", "proxy"):
            r = one(h, p)
            print(f"  warm-up {h}/{p}: ok={r['ok']} {r['error']}", flush=True)
            if h == "stock" and p == "own" and not r["ok"]:
                raise SystemExit("bench: the stock helper cannot even mount; nothing to compare")
    for i in range(args.rounds):
        order = helpers if i % 2 == 0 else helpers[::-1]
        for p in ("own", "proxy"):
            for h in order:
                r = one(h, p)
                r["round"] = i
                results.append(r)
                print(
                    f"  round {i} {h:5} {p:5} ok={r['ok']!s:5} "
                    f"upcall={fmt_s(r['upcall_s']):>8} access={fmt_s(r['access_s']):>8} "
                    f"AS={r['as_req']} TGS={r['tgs_req']} {r['error']}",
                    flush=True,
                )
    RKCONF.write_text(f"create cifs.spnego * * {STOCK} %k\n")

    paths = {
        "own": "own ticket, service ticket cached (alice)",
        "proxy": "first impersonated access (bob, no ticket)",
    }
    print()
    print(
        f"Upcall wall time, medians over {args.rounds} interleaved rounds "
        "(TCG guest; successful upcalls only)"
    )
    hdr = (
        f"{'path':<44}| {'cifs.upcall':>12} | {'ours':>12} | {'ours/stock':>10} "
        f"| {'KDC req stock':>13} | {'KDC req ours':>12}"
    )
    print(hdr)
    print("-" * len(hdr))
    table = {}
    for p, label in paths.items():
        row = {}
        for h in ("stock", "ours"):
            rs = [r for r in results if r["helper"] == h and r["path"] == p]
            ok = [r for r in rs if r["ok"] and r["upcall_s"] is not None]
            row[h] = {
                "n_ok": len(ok),
                "n": len(rs),
                "upcall_median_s": median([r["upcall_s"] for r in ok]),
                "access_median_s": median([r["access_s"] for r in ok]),
                "kdc_as_median": median([r["as_req"] for r in ok]),
                "kdc_tgs_median": median([r["tgs_req"] for r in ok]),
            }
        table[p] = row
        s, o = row["stock"], row["ours"]
        ratio = (
            f"{o['upcall_median_s'] / s['upcall_median_s']:.2f}x"
            if s["upcall_median_s"] and o["upcall_median_s"]
            else "n/a"
        )

        def kdc(c: dict[str, Any]) -> str:
            if c["kdc_as_median"] is None:
                return "n/a"
            return f"{c['kdc_as_median']:g} AS+{c['kdc_tgs_median']:g} TGS"

        def cell(c: dict[str, Any]) -> str:
            return f"{fmt_s(c['upcall_median_s'])} {c['n_ok']}/{c['n']}" if c["n"] else "not run"

        print(
            f"{label:<44}| {cell(s):>12} | {cell(o):>12} | {ratio:>10} "
            f"| {kdc(s):>13} | {kdc(o):>12}"
        )
    print()
    self_ms = {
        p: median(
            [
                r["self_ms"]
                for r in results
                if r["helper"] == "ours"
                and r["path"] == p
                and r["ok"]
                and r.get("self_ms") is not None
            ]
        )
        for p in paths
    }
    print(
        "ours, as logged by the helper itself (ms=, after interpreter start-up), medians: "
        + "; ".join(f"{p}: {'n/a' if v is None else f'{v:.0f} ms'}" for p, v in self_ms.items())
    )
    base = {
        "python3 -c pass": startup_ms("/usr/bin/python3 -c pass"),
        "python3 -c 'import gssapi'": startup_ms("/usr/bin/python3 -c 'import gssapi'"),
        "cifs-upcall --version": startup_ms(f"{OURS} --version") if "ours" in helpers else None,
        "cifs.upcall -v": startup_ms(f"{STOCK} -v"),
    }
    print(
        "start-up in this guest, medians of 5: "
        + "; ".join(f"{k}: {'n/a' if v is None else f'{v:.0f} ms'}" for k, v in base.items())
    )
    print(
        "end-to-end first access (ls, incl. SMB session setup), medians: "
        + "; ".join(
            f"{p}: stock {fmt_s(table[p]['stock']['access_median_s'])}, "
            f"ours {fmt_s(table[p]['ours']['access_median_s'])}"
            for p in paths
        )
    )
    if args.out:
        args.out.write_text(
            json.dumps({"rounds": args.rounds, "results": results, "table": table}, indent=1)
        )


if __name__ == "__main__":
    main()
