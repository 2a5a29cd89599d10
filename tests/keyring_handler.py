#!/opt/cifs-upcall/bin/python3
"""A request-key handler for `user` keys named `cifs-upcall-test:*`, built on upcall.kernel.keyring.

The kernel has no cifs.spnego key type without cifs.ko, so the keyring edge (assume authority,
describe, instantiate, negate) is exercised on `user` keys through the real /sbin/request-key.
Description `cifs-upcall-test:ok:<x>` -> instantiated with payload `payload:<x>`;
`cifs-upcall-test:negate:<x>` -> negated for 3 s.
"""

from __future__ import annotations

import sys

from upcall.kernel import keyring


def main() -> int:
    serial = int(sys.argv[1])
    keyring.assume_authority(serial)
    info = keyring.describe(serial)
    _, action, tag = info.description.split(":", 2)
    if action == "ok":
        keyring.instantiate(serial, f"payload:{tag}:{info.type}:{info.uid}".encode())
    else:
        keyring.negate(serial, 3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
