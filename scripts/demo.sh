#!/usr/bin/env bash
# Installs everything and runs the end-to-end demo on the built-in lab: a Samba AD DC in a
# network namespace, alice with her own ticket in a real process, the helper turning it into a
# cifs.spnego payload, and the lab's SMB server accepting that payload (signed and sealed).
# The helper it runs is the installed one: scripts/setup.sh installs this tree as a package (not
# editable) into /opt/cifs-upcall, the same build (setup.py, the cffi builder) as the .deb's.
# The Debian package itself is exercised by scripts/try-deb.sh (a chroot) and vm/run (the guests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec /opt/cifs-upcall/bin/python scripts/demo.py "$@"
