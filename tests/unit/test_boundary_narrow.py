"""boundary.narrow(): the bounding set and securebits go in preload, and again after a user
namespace was entered (the kernel gives a full set there; root, in a forked child); and
privileges_left(), verify()'s reading of a status text (pure)."""

from __future__ import annotations

import json
import os

import pytest

from upcall.worker import boundary


def _in_child() -> dict[str, object]:
    boundary.narrow()
    with open("/proc/thread-self/status") as f:
        status = f.read()
    bnd = next(line.split()[1] for line in status.splitlines() if line.startswith("CapBnd:"))
    entered: list[int] = []
    boundary._setns.setns = lambda fd, flags: entered.append(flags)  # type: ignore[assignment]
    boundary.enter(-1, 0x40000000 | 0x00020000)  # net+mnt: still narrowed
    after_net = bool(boundary._narrowed)
    boundary.enter(-1, 0x10000000 | 0x00020000)  # user+mnt: the kernel restores both
    after_user = bool(boundary._narrowed)
    return {"bnd": bnd, "net": after_net, "user": after_user, "entered": entered}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CAP_SETPCAP)")
def test_narrow_empties_the_bounding_set_and_forgets_it_on_entering_a_user_namespace() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.write(w, json.dumps(_in_child()).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = json.loads(f.read() or "{}")
    os.waitpid(pid, 0)
    assert out["bnd"] == "0000000000000000"
    assert out["net"] is True and out["user"] is False  # drop() narrows again after a userns
    assert out["entered"] == [0x40020000, 0x10020000]


@pytest.mark.parametrize(
    ("status", "left"),
    [
        ("CapInh:\t0\nCapPrm:\t0\nCapEff:\t0\nCapBnd:\t0\nCapAmb:\t0\nNoNewPrivs:\t1\n", ""),
        ("CapInh:\t0\nCapPrm:\t0\nCapEff:\t0\nCapBnd:\t0\nCapAmb:\t0\nNoNewPrivs:\t0\n",
         " NoNewPrivs=0"),
        ("CapInh:\t0\nCapPrm:\t0\nCapEff:\t0\nCapBnd:\t1ff\nCapAmb:\t0\nNoNewPrivs:\t1\n",
         "CapBnd=1ff NoNewPrivs=1"),
        ("CapPrm:\t0\nCapEff:\t0\nCapBnd:\t0\nCapAmb:\t0\nNoNewPrivs:\t1\n",
         "CapInh=? NoNewPrivs=1"),  # a missing line counts as a privilege left
        ("", "CapInh=? CapPrm=? CapEff=? CapBnd=? CapAmb=? NoNewPrivs=?"),
    ],
)  # fmt: skip
def test_privileges_left_reads_every_set_and_no_new_privs(status: str, left: str) -> None:
    assert boundary.privileges_left(status) == left
