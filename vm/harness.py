"""vm/run: the one command for the kernel-level tests.

Builds the guest image if its recipe changed (vm/build-image), ships the project's current working
tree into a fresh run directory, boots the guest once with no network device (vm/boot-vm), where
vm/guest/tests/run.sh installs the tree into /opt/cifs-upcall and runs every scenario with the
stock cifs.upcall and with ours, then prints the results side by side and a closing line
``vm: N passed, N failed``.

Exit status: 0 when every scenario expected to pass (vm/expected) passed; 1 when one did not;
2 for a harness error (no result from the guest, build failure); 77 when this machine cannot run
the VM at all (missing qemu/debootstrap, not root), said loudly on stderr.

Usage: vm/run [--helpers "stock ours"] [--scenarios "10 20"] [--bench] [--bench-rounds N]
              [--shell] [--print-key]
Env: VM_CACHE (default /var/cache/cifs-upcall-vm), ACCEL, TIMEOUT, MEM, SMP (see vm/boot-vm).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

VM_DIR = Path(__file__).resolve().parent
REPO = VM_DIR.parent
CACHE = Path(os.environ.get("VM_CACHE", "/var/cache/cifs-upcall-vm"))
EXIT_CANNOT_RUN = 77
HOST_TOOLS = ("qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4", "chroot")


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
    """vm/expected: '<scenario-number> <helper> pass|xfail|info [why]' per line."""
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


def report(out: Path, helpers: list[str]) -> int:
    """Print the side-by-side table; return the exit status."""
    expected = load_expected()
    titles = scenario_titles()
    cells: dict[tuple[str, str], Cell] = {}
    for helper in helpers:
        for f in sorted((out / "results" / helper).glob("*.checks")):
            cells[(f.stem, helper)] = parse_checks(f, helper)
    scenarios = sorted({s for s, _ in cells})
    if not scenarios:
        print("vm: no scenario results came back from the guest", file=sys.stderr)
        print("vm: 0 passed, 0 failed")
        return 2

    n_pass = n_fail = 0
    unexpected: list[str] = []
    xpass: list[str] = []
    w = max(len(f"{s[:2]} {titles.get(s, s)}") for s in scenarios) + 1
    header = f"{'scenario':<{w}}" + "".join(f"| {h:<22}" for h in helpers)
    print()
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
            exp = expected.get((num, h), Expectation("pass"))
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
                exp = expected.get((s[:2], h), Expectation("pass"))
                note = f" [expected {exp.outcome}: {exp.why}]" if exp.outcome != "pass" else ""
                print(f"{s} / {h}: failed checks{note}")
                for _, name, detail in cell.failed:
                    print(f"    FAIL {name}: {detail[:240]}")
    summary = {
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
        print(f"vm: XPASS (expected to fail, passed; update vm/expected): {' '.join(xpass)}")
    if unexpected:
        print(f"vm: UNEXPECTED failures: {' '.join(unexpected)}")
    else:
        print("vm: every scenario expected to pass passed")
    print(f"vm: {n_pass} passed, {n_fail} failed")
    return 1 if unexpected else 0


# --- cache housekeeping ------------------------------------------------------------------------
KEEP_RUNS = 10


def prune_cache(image: Path) -> None:
    """Drop images of older recipes (about 600 MB each) and all but the newest KEEP_RUNS runs.

    Kept: the current image, and the newest stage-1 base (the next stage-2 edit reuses it).
    Only finished images (a MANIFEST) are touched; *.tmp dirs of a build in progress are not.
    """
    images = image.parent
    bases = sorted(images.glob("*-base-*/MANIFEST"), key=lambda p: p.stat().st_mtime)
    keep = {image.name, *(p.parent.name for p in bases[-1:])}
    for manifest in images.glob("*/MANIFEST"):
        d = manifest.parent
        if d.name not in keep and not d.is_symlink() and not d.name.endswith(".tmp"):
            log(f"pruning old image {d.name}")
            shutil.rmtree(d, ignore_errors=True)
    runs = sorted(p for p in (CACHE / "runs").glob("2*") if p.is_dir())
    for d in runs[:-KEEP_RUNS]:
        shutil.rmtree(d, ignore_errors=True)


# --- run -----------------------------------------------------------------------------------
def working_tree_tar(dest: Path) -> int:
    """The project's current working tree (tracked + untracked, minus .gitignore'd) as a tar."""
    names = (
        subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    n = 0
    with tarfile.open(dest, "w") as tar:
        for name in names:
            p = REPO / name
            if name and p.is_file() and "__pycache__" not in p.parts:
                tar.add(p, arcname=name, recursive=False)
                n += 1
    return n


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


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--helpers", default="stock ours")
    ap.add_argument("--scenarios", default="", help="scenario numbers, e.g. '10 20' (default: all)")
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
    ap.add_argument("--print-key", action="store_true", help="print the image cache key")
    ap.add_argument("--report", metavar="RUNDIR", help="only print the report of an earlier run")
    args = ap.parse_args()
    helpers = args.helpers.split()

    if args.print_key:
        return subprocess.call([str(VM_DIR / "build-image"), "--print-key"])
    if args.report:
        return report(Path(args.report) / "out", helpers)
    reason = cannot_run_reason()
    if reason:
        print(f"vm/run: CANNOT RUN THE VM TESTS ON THIS MACHINE: {reason}", file=sys.stderr)
        print("vm: 0 passed, 0 failed (not run)")
        return EXIT_CANNOT_RUN

    t0 = time.monotonic()
    build = subprocess.run([str(VM_DIR / "build-image")], stdout=subprocess.PIPE, text=True)
    if build.returncode != 0:
        print("vm/run: image build failed", file=sys.stderr)
        return 2
    image = Path(build.stdout.strip().splitlines()[-1])
    t_build = time.monotonic() - t0
    log(f"image {image.name} ready ({t_build:.0f} s)")
    prune_cache(image)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    rundir = CACHE / "runs" / stamp
    rundir.mkdir(parents=True)
    shutil.copytree(VM_DIR / "guest/tests", rundir / "tests")
    shutil.copy2(VM_DIR / "guest/tests/run.sh", rundir / "run.sh")
    n = working_tree_tar(rundir / "src.tar")
    (rundir / "env").write_text(
        f"VM_HELPERS='{args.helpers}'\nVM_SCENARIOS='{args.scenarios}'\n"
        f"VM_BENCH={1 if args.bench else 0}\nVM_BENCH_ROUNDS={args.bench_rounds}\n"
        f"OURS_ARGS='{args.ours_args}'\n"
    )
    latest = CACHE / "runs" / "latest"
    latest.unlink(missing_ok=True)
    latest.symlink_to(stamp)
    log(f"run dir {rundir} (working tree: {n} files)")

    boot = [str(VM_DIR / "boot-vm"), "--image", str(image), "--rundir", str(rundir)]
    if args.shell:
        return subprocess.call([*boot, "--shell"])
    stop = threading.Event()
    tail = threading.Thread(target=follow, args=(rundir / "out/run.log", stop), daemon=True)
    tail.start()
    t1 = time.monotonic()
    env = dict(os.environ)
    # boot-vm's default 900 s covers boot + install + scenarios (~7 min, ~10 under load);
    # the benchmark adds ~3-4 min.
    env.setdefault("TIMEOUT", "1500" if args.bench else "900")
    rc = subprocess.call(boot, env=env)
    stop.set()
    tail.join()
    t_vm = time.monotonic() - t1
    out = rundir / "out"

    def read(name: str) -> str:
        p = out / name
        return p.read_text().strip() if p.exists() else "?"

    log(
        f"guest status {rc}; build {t_build:.0f} s, VM {t_vm:.0f} s "
        f"(boot to runner {read('boot-uptime')} s, run {read('run-seconds')} s)"
    )
    if rc in (124, 125, 126):
        print(
            f"vm/run: harness error: boot-vm exit {rc} "
            "(124 timeout, 125 no result, 126 KVM internal error); "
            f"serial log: {rundir}/serial.log",
            file=sys.stderr,
        )
    bench = out / "bench.txt"
    if bench.exists():  # the rounds were streamed above; repeat only the summary
        text = bench.read_text()
        print()
        print(text[text.find("Upcall wall time") :] if "Upcall wall time" in text else text)
    log(f"logs: {out}")
    status = report(out, helpers)  # ends with the closing line "vm: N passed, N failed"
    if rc in (124, 125, 126):
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
