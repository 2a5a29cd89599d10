"""End-to-end demo on the built-in lab (run by scripts/demo.sh as root).

1. A Samba AD DC (LAB.TEST) starts in its own loopback-only network namespace.
2. alice gets a ticket, and a process of hers waits with KRB5CCNAME in its environment only.
3. cifs-upcall --dry-run gets the key description the kernel would send for that process,
   through the warm daemon (`cifs-upcall serve`, started here on a private socket) exactly as
   request-key's client would hand it over: it enters the process's namespaces, becomes alice
   with no capability, finds her ccache, and builds the payload.
4. The lab's SMB server accepts that payload: SESSION_SETUP with our blob, a signed
   TREE_CONNECT and a read with our session key, then an AES-256-GCM sealed session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the lab lives in tests/components

from tests.components.samba import SambaLab, can_run_lab, running_lab
from tests.components.smb_client import smb_session
from upcall.kernel.payload import SpnegoMsg

HELPER = "/opt/cifs-upcall/bin/cifs-upcall"


def step(n: int, text: str) -> None:
    print(f"\n[{n}] {text}", flush=True)


def main() -> int:
    why = can_run_lab()
    if why:
        print(f"demo: cannot run: {why}", file=sys.stderr)
        return 2
    base = Path(f"/tmp/cifs-upcall-demo-{os.getpid()}")
    step(1, "Samba AD DC for LAB.TEST in its own network namespace (127.0.0.10)")
    t = time.monotonic()
    with running_lab(base, ns=f"cuplab-{os.getpid()}") as lab:
        print(f"    provisioned and started in {time.monotonic() - t:.1f}s")
        return _demo(lab)


def _demo(lab: SambaLab) -> int:
    alice = lab.add_user("alice", 23001)
    ccdir = lab.base / "tmp"
    cc = f"FILE:{ccdir}/krb5cc_alice_demo"
    step(2, f"alice kinit into {cc}; her process keeps KRB5CCNAME in its environment only")
    lab.kinit(alice, cc)
    caller = lab.popen(["sleep", "120"], user="alice", env=lab.env(KRB5CCNAME=cc))
    time.sleep(0.5)
    pid = _sleep_pid(caller.pid)
    desc = (
        f"ver=0x2;host={lab.fqdn};ip4={lab.ip};sec=krb5;uid=0x{alice.uid:x};"
        f"creduid=0x{alice.uid:x};pid=0x{pid:x};upcall_target=app"
    )
    sockdir = lab.base / "run"
    sockdir.mkdir(mode=0o700)
    sock = sockdir / "upcall.sock"
    daemon = subprocess.Popen([HELPER, "serve", "--socket", str(sock)])
    for _ in range(200):
        if sock.exists():
            break
        time.sleep(0.05)
    step(3, f"cifs-upcall --socket {sock} --dry-run '{desc}'")
    payload_file = lab.base / "payload.bin"
    try:
        res = subprocess.run(
            [HELPER, "--socket", str(sock), "-k", str(lab.krb5_conf), "--dry-run", desc,
             "--payload-out", str(payload_file), "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        caller.kill()
        daemon.terminate()
        daemon.wait(timeout=10)
    doc = json.loads(res.stdout)
    for a in doc["trail"]:
        print(f"    {a['source']:<10} {a['outcome']:<6} {a['detail']}")
    print(f"    outcome={doc['outcome']} principal={doc['principal']} spn={doc['spn']} "
          f"session_key={doc['session_key_len']} bytes (enctype {doc['enctype']}) "
          f"in {doc['seconds'] * 1000:.0f} ms via {doc['via']}")  # fmt: skip
    if doc["outcome"] != "ok":
        print(f"demo: FAILED: {doc['reason']}: {doc['message']} ({doc['hint']})")
        return 1
    msg = SpnegoMsg.unpack(payload_file.read_bytes())
    step(4, "the lab's SMB server takes the payload, as cifs.ko would use it")
    ok = True
    for dialect in ("2.0.2", "2.1", "3.0", "3.0.2", "3.1.1"):
        r = smb_session(lab, msg.blob, msg.session_key, dialect=dialect)
        good = r.tree_connect_signed and r.server_user == "alice"
        ok &= good
        print(f"    SMB {dialect:<6} signed tree connect={r.tree_connect_signed} "
              f"server user={r.server_user} read={r.content!r}")  # fmt: skip
    r = smb_session(lab, msg.blob, msg.session_key, dialect="3.1.1", share="secure",
                    ciphers=["AES-256-GCM"], encrypt=True)  # fmt: skip
    ok &= r.encryption_key_bits == 256 and r.content.startswith(b"hello")
    print(f"    SMB 3.1.1 sealed with {r.cipher} ({r.encryption_key_bits}-bit keys from the full "
          f"session key): read={r.content!r}")  # fmt: skip
    print("\ndemo: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


def _sleep_pid(root: int) -> int:
    """The `sleep` at the bottom of `ip netns exec ... setpriv ... sleep` (each step execs)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        comm = Path(f"/proc/{root}/comm").read_text().strip()
        if comm == "sleep":
            return root
        time.sleep(0.05)
    raise RuntimeError("caller process did not reach sleep")


if __name__ == "__main__":
    sys.exit(main())
