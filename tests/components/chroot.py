"""A cached Debian trixie root (Samba 4.22) for the RBCD lab DC.

Bookworm's Samba 4.17 ignores msDS-AllowedToActOnBehalfOfOtherIdentity; trixie's 4.22 honours it.
The root is built once with debootstrap (about 80-100 s and ~150 MB from deb.debian.org) and
cached under a name derived from the recipe, so a changed recipe builds a new root.

Safety and concurrency:
* It is built in a temporary directory next to the cache entry and renamed into place, so an
  entry that exists is complete; a crashed build leaves only a `.build-*` directory, removed by
  the next build.
* An fcntl lock serialises builds between test sessions (and processes of one session).
* debootstrap runs in private mount and pid namespaces (`unshare`), so the /proc and /sys it
  mounts in the target never outlive it, and if the test process dies every process of the
  build dies with it; removal uses `rm --one-file-system` and refuses to run over a mount point.
* The host's resolv.conf and hostname are replaced: nothing in the root points at a resolver.
  The lab binds its namespace's /etc/hosts and resolv.conf over them at run time.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("CIFS_UPCALL_LAB_CACHE", "/var/cache/cifs-upcall-lab"))
MIRROR = "http://deb.debian.org/debian"
SUITE = "trixie"
VARIANT = "minbase"
# python3-cffi-backend: without it debootstrap cannot resolve the virtual
# python3-cffi-backend-api-max and python3-cryptography fails to configure.
PACKAGES = (
    "samba",
    "samba-ad-dc",
    "samba-ad-provision",
    "ldb-tools",
    "winbind",
    "python3-cffi-backend",
    "krb5-user",
)
# Bump when the post-processing below changes (it is part of the cache key).
RECIPE_VERSION = 1
STAMP = ".cifs-upcall-lab-recipe.json"


def recipe(suite: str = SUITE, packages: tuple[str, ...] = PACKAGES) -> dict[str, object]:
    return {
        "suite": suite,
        "variant": VARIANT,
        "include": sorted(packages),
        "recipe_version": RECIPE_VERSION,
    }


def cache_key(suite: str = SUITE, packages: tuple[str, ...] = PACKAGES) -> str:
    blob = json.dumps(recipe(suite, packages), sort_keys=True).encode()
    return f"{suite}-{hashlib.sha256(blob).hexdigest()[:12]}"


def cached_chroot(cache_dir: Path = DEFAULT_CACHE) -> Path | None:
    """The cached root for the current recipe, if it has been built."""
    path = cache_dir / cache_key()
    return path if (path / STAMP).is_file() else None


def why_cannot_build(cache_dir: Path = DEFAULT_CACHE, mirror: str = MIRROR) -> str | None:
    """Why a root cannot be built here (None: it can, or one is already cached)."""
    if cached_chroot(cache_dir) is not None:
        return None
    if os.geteuid() != 0:
        return "debootstrap needs root"
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (apt-get install debootstrap)"
    if not Path("/usr/share/debootstrap/scripts", SUITE).exists():
        return f"this debootstrap does not know the suite {SUITE!r}"
    keyring = Path(f"/usr/share/keyrings/debian-archive-{SUITE}-stable.gpg")
    if not keyring.exists():
        return f"no archive key for {SUITE} ({keyring}; upgrade debian-archive-keyring)"
    probe = cache_dir if cache_dir.exists() else cache_dir.parent
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < 1500 * 2**20:
        return f"only {free // 2**20} MiB free under {probe}; the {SUITE} root needs ~600 MiB"
    url = f"{mirror}/dists/{SUITE}/Release"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10):
            pass
    except OSError as e:
        return f"the Debian mirror is unreachable ({url}: {e})"
    return None


def ensure_trixie_chroot(
    cache_dir: Path = DEFAULT_CACHE, *, mirror: str = MIRROR, timeout: float = 1200
) -> Path:
    """Return a complete trixie root with Samba 4.22, building it if needed (under a lock)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / cache_key()
    if (final / STAMP).is_file():
        return final
    with open(cache_dir / f"{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if (final / STAMP).is_file():  # another session built it while we waited
            return final
        # We hold the lock, so every .build-* for this key is a leftover of a crashed build.
        for stale in cache_dir.glob(f".build-{final.name}-*"):
            _remove_tree(stale)
        if final.exists():  # no stamp: not ours to trust
            _remove_tree(final)
        tmp = cache_dir / f".build-{final.name}-{os.getpid()}"
        try:
            t = time.monotonic()
            _debootstrap(tmp, mirror, timeout)
            _finish(tmp)
            (tmp / STAMP).write_text(
                json.dumps(
                    {**recipe(), "mirror": mirror, "seconds": round(time.monotonic() - t, 1)},
                    indent=1,
                )
                + "\n"
            )
            os.rename(tmp, final)
        except BaseException:
            _remove_tree(tmp)
            raise
    return final


def _debootstrap(target: Path, mirror: str, timeout: float) -> None:
    # Own mount and pid namespaces: when unshare dies (it dies with us: PDEATHSIG), its child
    # is killed (--kill-child), and with it every process debootstrap started (dpkg, wget,
    # maintainer scripts). So a killed test session leaves no writer in the .build directory.
    argv = [
        "unshare", "-m", "--propagation", "private", "--pid", "--fork", "--kill-child",
        "--mount-proc",
        "debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}",
        SUITE, str(target), mirror,
    ]  # fmt: skip
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C",
    }
    log = target.parent / f"{target.name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent,
        )
        try:
            rc = proc.wait(timeout=timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            _kill_rooted_in(target)
            raise
    _kill_rooted_in(target)
    if rc != 0:
        tail = log.read_text(errors="replace")[-3000:]
        tail += _tail(target / "debootstrap" / "debootstrap.log")
        raise RuntimeError(f"debootstrap {SUITE} failed ({rc}); log {log}:\n{tail}")
    log.unlink()


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the parent (this test process) dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return "\n--- " + str(path) + "\n" + path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _finish(root: Path) -> None:
    """Post-process a fresh root: no link to the host's resolver, a mount point for lab state."""
    etc = root / "etc"
    for name, text in (
        ("resolv.conf", "# the lab binds its namespace's resolv.conf here at run time\n"),
        ("hostname", "lab-trixie\n"),
        ("hosts", "127.0.0.1 localhost\n"),
    ):
        p = etc / name
        if p.is_symlink() or p.exists():
            p.unlink()
        p.write_text(text)
    # Keep package scripts from ever starting daemons if someone uses apt inside later.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    (root / "lab").mkdir(exist_ok=True)
    # The cached root must not carry a config that could be mistaken for ours.
    (etc / "samba" / "smb.conf").unlink(missing_ok=True)
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) if path.exists() else str(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt == prefix or mnt.startswith(prefix + "/"):
                out.append(mnt)
    return out


def _kill_rooted_in(root: Path) -> None:
    """Kill processes whose root directory is inside `root` (e.g. a daemon a postinst started)."""
    if not root.exists():
        return
    rp = str(root.resolve())
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            r = os.readlink(d / "root")
        except OSError:
            continue
        if r == rp or r.startswith(rp + "/"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(d.name), signal.SIGKILL)


def _remove_tree(path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        return
    _kill_rooted_in(path)
    for mnt in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
    left = _mounts_under(path)
    if left:
        raise RuntimeError(f"refusing to delete {path}: still mounted: {left}")
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=True)
