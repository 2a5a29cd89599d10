"""vm/run: the one command for the kernel-level tests.

Builds the Debian packages of the working tree (scripts/build-deb.sh, into dist/), then per guest
suite (Debian 13 trixie and Debian 12 bookworm by default): builds the guest image if its recipe
changed (vm/build-image), puts the packages into a fresh run directory, boots the guest once with
no network device (vm/boot-vm), where vm/guest/tests/run.sh installs them (apt, as an
administrator would) and runs every scenario with the stock cifs.upcall and with ours; then prints
the results side by side per suite and a closing line ``vm: N passed, N failed`` over all suites.

Exit status: 0 when every scenario expected to pass (vm/expected) passed; 1 when one did not;
2 for a harness error (no result from the guest, build failure); 77 when this machine cannot run
the VM at all (missing qemu/debootstrap, not root), said loudly on stderr.

Usage: vm/run [--suites "trixie bookworm"] [--helpers "stock ours"] [--scenarios "10 20"]
              [--debs DIR] [--bench] [--bench-rounds N] [--shell] [--print-key]
Env: VM_CACHE (default /var/cache/cifs-upcall-vm), ACCEL, TIMEOUT, MEM, SMP (see vm/boot-vm).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

VM_DIR = Path(__file__).resolve().parent
REPO = VM_DIR.parent
CACHE = Path(os.environ.get("VM_CACHE", "/var/cache/cifs-upcall-vm"))
EXIT_CANNOT_RUN = 77
HOST_TOOLS = ("qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4", "chroot")
SUITES = ("trixie", "bookworm")


def cannot_run_reason() -> str | None:
    """Why this machine cannot build/boot the guest, or None."""
    missing = [t for t in HOST_TOOLS if shutil.which(t) is None]
    if missing:
        return (
            f"missing host tools: {', '.join(missing)} "
            "(apt-get install qemu-system-x86 qemu-utils debootstrap e2fsprogs)"
        )
    if os.geteuid() != 0:
        return "must run as root (debootstrap/chroot for the image build, 9p as root)"
    return None


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} vm/run: {msg}", flush=True)


# --- expectations ---------------------------------------------------------------------------
@dataclass
class Expectation:
    outcome: str  # pass | xfail | info
    why: str = ""


def load_expected() -> dict[tuple[str, str], Expectation]:
    """vm/expected: '<scenario-number> <helper>[@suite] pass|xfail|info [why]' per line.

    A line for helper@suite applies to that suite only and wins over the plain helper line."""
    out: dict[tuple[str, str], Expectation] = {}
    for line in (VM_DIR / "expected").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        num, helper, outcome, *why = line.split(None, 3)
        out[(num, helper)] = Expectation(outcome, why[0] if why else "")
    return out


# --- results --------------------------------------------------------------------------------
@dataclass
class Cell:
    helper: str
    scenario: str
    checks: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, name, detail)
    seconds: float | None = None

    @property
    def failed(self) -> list[tuple[str, str, str]]:
        return [c for c in self.checks if c[0] == "FAIL"]

    @property
    def passed(self) -> bool:
        return not self.failed and any(c[0] == "PASS" for c in self.checks)

    def summary(self) -> str:
        n_pass = sum(1 for c in self.checks if c[0] == "PASS")
        n_all = n_pass + len(self.failed)
        state = "PASS" if self.passed else "FAIL"
        secs = f" {self.seconds:.0f}s" if self.seconds is not None else ""
        return f"{state} {n_pass}/{n_all}{secs}"


def parse_checks(path: Path, helper: str) -> Cell:
    cell = Cell(helper, path.stem)
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("SECONDS "):
            cell.seconds = float(line.split()[1])
            continue
        kind, _, rest = line.partition(" ")
        if kind not in ("PASS", "FAIL", "INFO"):
            continue
        name, _, detail = rest.partition(" | ")
        cell.checks.append((kind, name.strip(), detail.strip()))
    return cell


def scenario_titles() -> dict[str, str]:
    titles = {}
    for f in sorted((VM_DIR / "guest/tests/scenarios").glob("[0-9]*.sh")):
        for line in f.read_text().splitlines():
            if line.startswith("TITLE="):
                titles[f.stem] = line.split("=", 1)[1].strip('"').replace("\\$", "$")
    return titles


def expectation(
    expected: dict[tuple[str, str], Expectation], num: str, helper: str, suite: str
) -> Expectation:
    return expected.get((num, f"{helper}@{suite}")) or expected.get(
        (num, helper), Expectation("pass")
    )


def report(out: Path, helpers: list[str], suite: str = "trixie") -> tuple[int, int, int]:
    """Print the side-by-side table; return (exit status, cells passed, cells failed)."""
    expected = load_expected()
    titles = scenario_titles()
    cells: dict[tuple[str, str], Cell] = {}
    for helper in helpers:
        for f in sorted((out / "results" / helper).glob("*.checks")):
            cells[(f.stem, helper)] = parse_checks(f, helper)
    scenarios = sorted({s for s, _ in cells})
    if not scenarios:
        print(f"vm: {suite}: no scenario results came back from the guest", file=sys.stderr)
        return 2, 0, 0

    n_pass = n_fail = 0
    unexpected: list[str] = []
    xpass: list[str] = []
    w = max(len(f"{s[:2]} {titles.get(s, s)}") for s in scenarios) + 1
    header = f"{'scenario':<{w}}" + "".join(f"| {h:<22}" for h in helpers)
    print()
    print(f"guest: Debian {suite}")
    print(header)
    print("-" * len(header))
    for s in scenarios:
        num = s[:2]
        row = f"{num + ' ' + titles.get(s, s):<{w}}"
        for h in helpers:
            cell = cells.get((s, h))
            if cell is None:
                row += f"| {'(not run)':<22}"
                continue
            exp = expectation(expected, num, h, suite)
            text = cell.summary()
            if cell.passed:
                n_pass += 1
                if exp.outcome == "xfail":
                    text += " XPASS"
                    xpass.append(f"{num}/{h}")
            else:
                n_fail += 1
                if exp.outcome == "xfail":
                    text += " (xfail)"
                elif exp.outcome == "info":
                    text += " (info)"
                else:
                    unexpected.append(f"{num}/{h}")
            row += f"| {text:<22}"
        print(row)
    print()
    for s in scenarios:
        for h in helpers:
            cell = cells.get((s, h))
            if cell and cell.failed:
                exp = expectation(expected, s[:2], h, suite)
                note = f" [expected {exp.outcome}: {exp.why}]" if exp.outcome != "pass" else ""
                print(f"{s} / {h}: failed checks{note}")
                for _, name, detail in cell.failed:
                    print(f"    FAIL {name}: {detail[:240]}")
    summary = {
        "suite": suite,
        "cells": [
            {
                "scenario": c.scenario,
                "helper": c.helper,
                "passed": c.passed,
                "seconds": c.seconds,
                "checks": c.checks,
            }
            for c in cells.values()
        ],
        "unexpected_failures": unexpected,
        "xpass": xpass,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if xpass:
        print(
            f"vm: {suite}: XPASS (expected to fail, passed; update vm/expected): {' '.join(xpass)}"
        )
    if unexpected:
        print(f"vm: {suite}: UNEXPECTED failures: {' '.join(unexpected)}")
    else:
        print(f"vm: {suite}: every scenario expected to pass passed")
    print(f"vm: {suite}: {n_pass} passed, {n_fail} failed")
    return (1 if unexpected else 0), n_pass, n_fail


# --- cache housekeeping ------------------------------------------------------------------------
KEEP_RUNS = 10


KEEP_IMAGES = 2


def prune_cache(image: Path, suite: str) -> None:
    """Drop images of older recipes (about 600 MB each) and all but the newest KEEP_RUNS runs.

    Only this suite's images are considered. Kept: the current image, the newest KEEP_IMAGES
    images and stage-1 bases (another checkout may be using the previous recipe right now).
    Only finished images (a MANIFEST) are touched; *.tmp dirs of a build in progress are not.
    """
    images = image.parent

    def newest(pattern: str, base: bool) -> list[str]:
        found = [p for p in images.glob(pattern) if ("-base-" in p.parent.name) == base]
        found.sort(key=lambda p: p.stat().st_mtime)
        return [p.parent.name for p in found[-KEEP_IMAGES:]]

    keep = {
        image.name,
        *newest(f"{suite}-base-*/MANIFEST", base=True),
        *newest(f"{suite}-*/MANIFEST", base=False),
    }
    for manifest in images.glob(f"{suite}-*/MANIFEST"):
        d = manifest.parent
        if d.name not in keep and not d.is_symlink() and not d.name.endswith(".tmp"):
            log(f"pruning old image {d.name}")
            shutil.rmtree(d, ignore_errors=True)
    runs = sorted(p for p in (CACHE / "runs").glob("2*") if p.is_dir())
    for d in runs[:-KEEP_RUNS]:
        shutil.rmtree(d, ignore_errors=True)


# --- run -----------------------------------------------------------------------------------
def build_debs() -> Path | None:
    """scripts/build-deb.sh: the working tree's Debian packages in dist/ (None: it failed)."""
    log("building the Debian packages (scripts/build-deb.sh)")
    rc = subprocess.call(["bash", str(REPO / "scripts/build-deb.sh")], stdout=sys.stderr)
    if rc != 0:
        print(f"vm/run: scripts/build-deb.sh failed (exit {rc})", file=sys.stderr)
        return None
    return REPO / "dist"


def copy_debs(src: Path, dest: Path) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    for deb in sorted(src.glob("*.deb")):
        shutil.copy2(deb, dest / deb.name)
        names.append(deb.name)
    return names


def follow(path: Path, stop: threading.Event) -> None:
    """Echo a growing file (the guest's run.log) until stop is set."""
    pos = 0
    while True:
        done = stop.is_set()
        if path.exists():
            with path.open("rb") as f:
                f.seek(pos)
                data = f.read()
                pos += len(data)
            if data:
                sys.stdout.write(data.decode(errors="replace"))
                sys.stdout.flush()
        if done:
            return
        time.sleep(1)


def run_suite(suite: str, args: argparse.Namespace, debs: Path | None) -> tuple[int, int, int]:
    """Build (if needed) and boot one suite's guest; (status, cells passed, cells failed)."""
    helpers = args.helpers.split()
    t0 = time.monotonic()
    env = dict(os.environ, VM_SUITE=suite)
    build = subprocess.run(
        [str(VM_DIR / "build-image")], stdout=subprocess.PIPE, text=True, env=env
    )
    if build.returncode != 0:
        print(f"vm/run: {suite}: image build failed", file=sys.stderr)
        return 2, 0, 0
    image = Path(build.stdout.strip().splitlines()[-1])
    t_build = time.monotonic() - t0
    log(f"{suite}: image {image.name} ready ({t_build:.0f} s)")
    prune_cache(image, suite)

    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{suite}"
    rundir = CACHE / "runs" / stamp
    rundir.mkdir(parents=True)
    shutil.copytree(VM_DIR / "guest/tests", rundir / "tests")
    shutil.copy2(VM_DIR / "guest/tests/run.sh", rundir / "run.sh")
    names = copy_debs(debs, rundir / "debs") if debs else []
    (rundir / "env").write_text(
        f"VM_SUITE='{suite}'\nVM_HELPERS='{args.helpers}'\nVM_SCENARIOS='{args.scenarios}'\n"
        f"VM_BENCH={1 if args.bench else 0}\nVM_BENCH_ROUNDS={args.bench_rounds}\n"
        f"OURS_ARGS='{args.ours_args}'\n"
    )
    for link in (CACHE / "runs" / "latest", CACHE / "runs" / f"latest-{suite}"):
        link.unlink(missing_ok=True)
        link.symlink_to(stamp)
    log(f"{suite}: run dir {rundir} (packages: {' '.join(names) or 'none'})")

    boot = [str(VM_DIR / "boot-vm"), "--image", str(image), "--rundir", str(rundir)]
    if args.shell:
        return subprocess.call([*boot, "--shell"]), 0, 0
    stop = threading.Event()
    tail = threading.Thread(target=follow, args=(rundir / "out/run.log", stop), daemon=True)
    tail.start()
    t1 = time.monotonic()
    # boot-vm's default 900 s covers boot + install + scenarios (~7 min, ~10 under load);
    # the benchmark adds ~3-4 min.
    env.setdefault("TIMEOUT", "1500" if args.bench else "900")
    rc = subprocess.call(boot, env=env)
    if rc == 127:  # the guest kernel panicked (an emulation fault, not our code): once more
        panic = rundir / "serial.log"
        panic.rename(rundir / "serial.log.panic")
        log(f"{suite}: the guest kernel panicked (serial.log.panic); booting once more")
        rc = subprocess.call(boot, env=env)
    stop.set()
    tail.join()
    t_vm = time.monotonic() - t1
    out = rundir / "out"

    def read(name: str) -> str:
        p = out / name
        return p.read_text().strip() if p.exists() else "?"

    log(
        f"{suite}: guest status {rc}; build {t_build:.0f} s, VM {t_vm:.0f} s "
        f"(boot to runner {read('boot-uptime')} s, run {read('run-seconds')} s)"
    )
    if rc in (124, 125, 126):
        print(
            f"vm/run: {suite}: harness error: boot-vm exit {rc} "
            "(124 timeout, 125 no result, 126 KVM internal error, 127 guest kernel panic); "
            f"serial log: {rundir}/serial.log",
            file=sys.stderr,
        )
    bench = out / "bench.txt"
    if bench.exists():  # the rounds were streamed above; repeat only the summary
        text = bench.read_text()
        print()
        print(text[text.find("Upcall wall time") :] if "Upcall wall time" in text else text)
    log(f"{suite}: logs: {out}")
    status, n_pass, n_fail = report(out, helpers, suite)
    if rc in (124, 125, 126):
        status = 2
    return status, n_pass, n_fail


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--suites", default=" ".join(SUITES), help="guest releases, e.g. 'bookworm' (default: all)"
    )
    ap.add_argument("--helpers", default="stock ours")
    ap.add_argument("--scenarios", default="", help="scenario numbers, e.g. '10 20' (default: all)")
    ap.add_argument(
        "--debs", metavar="DIR", help="install these .deb files instead of building them"
    )
    ap.add_argument(
        "--bench", action="store_true", help="also run vm/guest/tests/bench.py in the guest"
    )
    ap.add_argument("--bench-rounds", type=int, default=7)
    ap.add_argument(
        "--ours-args", default="", help="options for our helper's request-key line, e.g. '-d'"
    )
    ap.add_argument(
        "--shell", action="store_true", help="interactive boot (serial console), no scenarios"
    )
    ap.add_argument("--print-key", action="store_true", help="print the image cache key(s)")
    ap.add_argument("--report", metavar="RUNDIR", help="only print the report of an earlier run")
    args = ap.parse_args()
    helpers = args.helpers.split()
    suites = args.suites.split()
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        ap.error(f"unknown suite(s) {' '.join(unknown)}; known: {' '.join(SUITES)}")

    if args.print_key:
        rc = 0
        for suite in suites:
            env = dict(os.environ, VM_SUITE=suite)
            rc |= subprocess.call([str(VM_DIR / "build-image"), "--print-key"], env=env)
        return rc
    if args.report:
        env_file = Path(args.report) / "env"
        suite = "trixie"
        if env_file.exists() and "VM_SUITE='bookworm'" in env_file.read_text():
            suite = "bookworm"
        status, n_pass, n_fail = report(Path(args.report) / "out", helpers, suite)
        print(f"vm: {n_pass} passed, {n_fail} failed")
        return status
    reason = cannot_run_reason()
    if reason:
        print(f"vm/run: CANNOT RUN THE VM TESTS ON THIS MACHINE: {reason}", file=sys.stderr)
        print("vm: 0 passed, 0 failed (not run)")
        return EXIT_CANNOT_RUN

    debs: Path | None = None
    if "ours" in helpers:
        debs = Path(args.debs) if args.debs else build_debs()
        if debs is None or not list(debs.glob("*.deb")):
            print("vm/run: no Debian packages to install in the guest", file=sys.stderr)
            print("vm: 0 passed, 0 failed (no packages)")
            return 2
    status = total_pass = total_fail = 0
    for suite in suites:
        rc, n_pass, n_fail = run_suite(suite, args, debs)
        status = max(status, rc)
        total_pass += n_pass
        total_fail += n_fail
    print(f"vm: {total_pass} passed, {total_fail} failed")
    return status


if __name__ == "__main__":
    sys.exit(main())
