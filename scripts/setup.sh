#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian 12 machine (run as root):
# Debian packages, and a venv at $CIFS_UPCALL_PREFIX (default /opt/cifs-upcall) built on
# Debian's /usr/bin/python3 so that request-key (and unprivileged test users) can run it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=${CIFS_UPCALL_PREFIX:-/opt/cifs-upcall}

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root" >&2; exit 1; }

# Keep apt from starting the packaged samba/gssproxy services: the lab starts its own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
fi

pkgs=(
  # runtime of the helper (Debian's bindings: no source builds)
  python3 python3-venv python3-gssapi python3-keyutils python3-pyroute2 python3-cffi python3-yaml
  keyutils libkeyutils1 krb5-user gssproxy
  # the lab: Samba AD DC, MIT KDC tools, SMB client, cifs-utils for side-by-side benchmarks
  samba samba-ad-dc samba-ad-provision smbclient ldb-tools winbind attr krb5-kdc cifs-utils
  # tests (the hostile suite builds a FUSE server and krb5 plugins with gcc)
  python3-pytest python3-hypothesis iproute2 util-linux procps gcc libc6-dev fuse3 libfuse3-dev
  # the RBCD chroot and the VM
  debootstrap qemu-system-x86 qemu-utils e2fsprogs zstd
)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=900 \
        --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$prefix/bin/python3" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$prefix"
fi
stamp="$prefix/.installed-$(sha256sum "$here/pyproject.toml" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    "$prefix/bin/pip" install -q --disable-pip-version-check \
        "smbprotocol>=1.13" ruff mypy types-PyYAML
    touch "$stamp"
fi
# The pre-built cffi module (upcall/_native.py): no pycparser at upcall time.
"$prefix/bin/python3" "$here/upcall/_native_build.py" >/dev/null
# The project itself, editable so tests run the working tree.
"$prefix/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$here" \
    >/dev/null
# request-key's entry: a -I -S launcher (no site) instead of pip's console script.
"$prefix/bin/python3" -m upcall._launcher "$prefix/bin/cifs-upcall" "$prefix/bin/python3"
chmod -R a+rX "$prefix"
echo "setup.sh: ready ($prefix)"
