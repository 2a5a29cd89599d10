#!/usr/bin/env bash
# The lab and test installer (run as root on Debian 12); an administrator installs the Debian
# package instead (bash scripts/build-deb.sh; apt install ./dist/*.deb).
#
# It installs, and says so as it goes:
#  1. Debian packages: the helper's runtime, the lab (Samba AD DC, MIT KDC tools, SMB client,
#     cifs-utils for side-by-side runs), the test tools and what the RBCD chroot and the VM need.
#     Services stay stopped while apt runs (a policy-rc.d that exists only for the apt-get call;
#     any policy-rc.d that was there before is put back), and the units those packages enabled
#     are disabled afterwards: the lab starts its own daemons, the host gets none at boot.
#  2. A venv at $CIFS_UPCALL_PREFIX (default /opt/cifs-upcall) on Debian's /usr/bin/python3 with
#     --system-site-packages, holding the dev and test tools (ruff, mypy, types-PyYAML,
#     smbprotocol) and this tree installed as a package (not editable: the tests that run the
#     installed helper run what an install produces; reinstalled on every run).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=${CIFS_UPCALL_PREFIX:-/opt/cifs-upcall}

say() { printf 'setup.sh: %s\n' "$*"; }
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root" >&2; exit 1; }

pkgs=(
  # runtime of the helper (Debian's bindings: no source builds)
  python3 python3-venv python3-setuptools python3-gssapi python3-keyutils python3-pyroute2
  python3-cffi python3-yaml keyutils libkeyutils1 krb5-user gssproxy
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

# --- Debian packages, with no service started meanwhile ------------------------------------------
prc=/usr/sbin/policy-rc.d
prc_saved=
restore_policy_rc() {
    if [ -n "$prc_saved" ]; then
        mv -f "$prc_saved" "$prc"
        say "restored the existing $prc"
    else
        rm -f "$prc"
    fi
    prc_saved=
}
enabled_units() {
    # What is enabled for boot, read from the symlinks (works in a chroot without systemd too).
    find /etc/systemd/system -mindepth 2 -maxdepth 2 \( -path '*.wants/*' -o -path '*.requires/*' \) \
        -printf '%f\n' 2>/dev/null | sort -u
}
disable_units() {
    local u now=
    [ -d /run/systemd/system ] && now=--now
    for u in "$@"; do
        if command -v systemctl > /dev/null; then
            systemctl disable $now "$u" > /dev/null 2>&1 || true
        else
            # no systemctl at all (a chroot without systemd): what "disable" does, by hand
            find /etc/systemd/system -mindepth 2 -maxdepth 2 -type l -name "$u" \
                \( -path '*.wants/*' -o -path '*.requires/*' \) -delete
        fi
    done
}
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages (with their dependencies): ${missing[*]}"
    before=$(enabled_units)
    if [ -e "$prc" ] || [ -L "$prc" ]; then
        prc_saved=$(mktemp "$prc.setup-sh.XXXXXX")
        cp -a "$prc" "$prc_saved"
    fi
    trap restore_policy_rc EXIT
    printf '#!/bin/sh\n# scripts/setup.sh, only while it runs apt-get\nexit 101\n' > "$prc"
    chmod 755 "$prc"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=900 \
        --no-install-recommends "${missing[@]}" >/dev/null
    restore_policy_rc
    trap - EXIT
    # Units the packages enabled for the next boot: the lab runs its own daemons.
    new=$(comm -13 <(printf '%s\n' "$before") <(enabled_units) | grep -v '^$' || true)
    if [ -n "$new" ]; then
        # shellcheck disable=SC2086
        disable_units $new
        say "disabled the units these packages enabled (the lab starts its own daemons):" "${new//$'\n'/ }"
        say "  (systemctl enable --now UNIT to have one at boot)"
    fi
else
    say "Debian packages: all ${#pkgs[@]} present"
fi
# Earlier versions of setup.sh wrote exactly these two lines and never removed them.
if [ -f "$prc" ] && [ "$(cat "$prc")" = "$(printf '#!/bin/sh\nexit 101')" ]; then
    say "note: $prc (\"exit 101\", as earlier versions of setup.sh left it) keeps apt from" \
        "starting any service on this machine; remove it unless someone else put it there"
fi

# --- the venv ----------------------------------------------------------------------------------
if [ ! -x "$prefix/bin/python3" ]; then
    say "creating the venv $prefix (Debian's python3, --system-site-packages)"
    /usr/bin/python3 -m venv --system-site-packages "$prefix"
fi
tools=("smbprotocol>=1.13" ruff mypy types-PyYAML)
stamp="$prefix/.installed-$(printf '%s\n' "${tools[@]}" | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    say "installing dev and test tools into $prefix from PyPI: ${tools[*]}"
    "$prefix/bin/pip" install -q --disable-pip-version-check "${tools[@]}"
    touch "$stamp"
fi
# The pre-built cffi module in the tree (upcall/_native.py) for the tests that import the tree;
# the installed package gets its own from setup.py's cffi_modules. No pycparser at upcall time.
say "generating upcall/_native.py in the tree (upcall/_native_build.py)"
"$prefix/bin/python3" "$here/upcall/_native_build.py" >/dev/null
# The project itself, as a package (its dependencies are the Debian python3-* packages above).
say "installing this tree into $prefix (pip, not editable; bin/cifs-upcall, bin/gssproxy-conf)"
"$prefix/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation \
    --force-reinstall "$here" > "$prefix/.install.log" 2>&1 || { cat "$prefix/.install.log" >&2; exit 1; }
grep '^setup.py:' "$prefix/.install.log" | sed 's/^/setup.sh: /' || true
rm -rf "$here/build" "$here"/*.egg-info
# request-key's entry: a -I -S launcher (no site) instead of pip's console script, pointing at
# the installed package (run from / so that the tree's upcall/ is not the one imported).
say "writing $prefix/bin/cifs-upcall: the python3 -I -S launcher of the installed package"
(cd / && "$prefix/bin/python3" -m upcall._launcher "$prefix/bin/cifs-upcall" "$prefix/bin/python3")
chmod -R a+rX "$prefix"
say "ready ($prefix)"
