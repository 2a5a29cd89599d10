#!/usr/bin/env bash
# Installs everything (scripts/setup.sh) and runs every check: ruff, mypy --strict, and the whole
# pytest suite against real components (Samba AD DCs in network namespaces, gssproxy, the kernel
# keyring, and the QEMU guest with cifs.ko under tests/vm/test_vm.py). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
py=/opt/cifs-upcall/bin
echo "== ruff";  "$py/ruff" check upcall gssproxy_conf tests vm scripts
echo "== mypy";  "$py/mypy"
echo "== pytest"
exec "$py/python" -m pytest -p no:cacheprovider "$@"
