#!/usr/bin/env bash
# Builds the Debian packages (cifs-upcall, gssproxy-conf) from this tree into dist/, and runs
# lintian on them. Run as root on Debian.
#
#   bash scripts/build-deb.sh            build in a clean Debian 12 chroot (cached), the default
#   bash scripts/build-deb.sh --host     build on this machine (its Build-Depends must be installed)
#
# The chroot (debootstrap minbase + debian/control's Build-Depends + lintian) is cached under
# $CIFS_UPCALL_BUILD_CACHE (default /var/cache/cifs-upcall-build), keyed by the suite and the
# Build-Depends, so nothing of the build tool chain lands on the host. The tree is what
# `git ls-files -co --exclude-standard` lists (uncommitted work included).
# Output: dist/*.deb, dist/*.changes, dist/*.buildinfo, dist/lintian.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
suite=${CIFS_UPCALL_BUILD_SUITE:-bookworm}
cache=${CIFS_UPCALL_BUILD_CACHE:-/var/cache/cifs-upcall-build}
mirror=${CIFS_UPCALL_MIRROR:-http://deb.debian.org/debian}
mode=chroot
[ "${1:-}" = --host ] && mode=host

say() { printf 'build-deb: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot)"

# The out-of-line cffi module is part of the package: no builder, no package.
[ -f "$here/upcall/_native_build.py" ] ||
    die "upcall/_native_build.py is missing: the package must ship upcall/_native.py, which that" \
        "builder (cffi ABI out-of-line mode) generates. Nothing was built."

build_depends() {
    # The Build-Depends field of debian/control, one package name per line.
    sed -n '/^Build-Depends:/,/^[A-Z]/p' "$here/debian/control" | sed '$d' |
        sed -e 's/^Build-Depends://' | tr ',' '\n' |
        sed -e 's/(.*)//' -e 's/[[:space:]]//g' -e '/^$/d'
}

in_chroot() {
    # Private mount and pid namespaces: the /proc mounted here never outlives the command.
    local root=$1
    shift
    unshare --mount --pid --fork chroot "$root" /usr/bin/env -i \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive sh -ec 'mount -t proc proc /proc; "$@"' sh "$@"
}

minbase() {
    # debootstrap --variant=minbase, cached: the build roots start from a copy of it.
    local root=$cache/$suite-minbase tmp
    if [ ! -e "$root/.complete" ]; then
        tmp=$cache/.build-minbase.$$
        rm -rf --one-file-system "$tmp"
        say "debootstrap $suite (minbase) into $root"
        if ! unshare --mount --pid --fork debootstrap --variant=minbase "$suite" "$tmp" "$mirror" \
            > "$cache/$suite-minbase.log" 2>&1; then
            tail -20 "$cache/$suite-minbase.log" >&2
            rm -rf --one-file-system "$tmp"
            die "debootstrap failed"
        fi
        touch "$tmp/.complete"
        mv "$tmp" "$root"
    fi
    echo "$root"
}

prepare_chroot() {
    local pkgs key root tmp base
    pkgs=$( (build_depends; echo build-essential; echo lintian; echo dpkg-dev; echo fakeroot) |
        sed -e 's/^debhelper-compat$/debhelper/' -e 's/^dh-sequence-python3$/dh-python/' | sort -u)
    # shellcheck disable=SC2086
    key="$suite-$(printf '%s\n' "$suite" $pkgs | sha256sum | cut -c1-12)"
    root=$cache/$key
    if [ -e "$root/.complete" ]; then
        echo "$root"
        return
    fi
    mkdir -p "$cache"
    base=$(minbase)
    tmp=$cache/.build-$key.$$
    rm -rf --one-file-system "$tmp"
    cp -a "$base" "$tmp"
    rm -f "$tmp/.complete"
    # shellcheck disable=SC2086
    say "installing the build dependencies in $root:" $pkgs
    # Name resolution only for this apt-get; nothing in the chroot starts a service.
    cp /etc/resolv.conf "$tmp/etc/resolv.conf"
    printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"
    chmod 755 "$tmp/usr/sbin/policy-rc.d"
    # shellcheck disable=SC2086
    if ! in_chroot "$tmp" sh -c 'apt-get update -qq && apt-get install -y -q --no-install-recommends "$@" && apt-get clean' sh $pkgs \
        > "$cache/$key.apt.log" 2>&1; then
        tail -20 "$cache/$key.apt.log" >&2
        rm -rf --one-file-system "$tmp"
        die "installing the build dependencies failed"
    fi
    : > "$tmp/etc/resolv.conf"
    touch "$tmp/.complete"
    mv "$tmp" "$root"
    echo "$root"
}

copy_tree() {
    local dest=$1
    mkdir -p "$dest"
    (cd "$here" && git ls-files -co --exclude-standard -z |
        grep -zv -e '^dist/' -e '__pycache__' |
        xargs -0 tar -cf - --no-recursion) | tar -xf - -C "$dest"
}

mkdir -p "$here/dist"
rm -f "$here/dist/"*.deb "$here/dist/"*.changes "$here/dist/"*.buildinfo "$here/dist/lintian.txt"
version=$(dpkg-parsechangelog -l "$here/debian/changelog" -S Version 2>/dev/null ||
    sed -n '1s/.*(\(.*\)).*/\1/p' "$here/debian/changelog")

if [ "$mode" = host ]; then
    work=$(mktemp -d /var/tmp/cifs-upcall-build.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    copy_tree "$work/cifs-upcall-$version"
    (cd "$work/cifs-upcall-$version" && dpkg-checkbuilddeps && dpkg-buildpackage -us -uc -b) >&2 ||
        die "dpkg-buildpackage failed"
    lintian --info "$work"/*.changes > "$here/dist/lintian.txt" 2>&1 || true
    cp "$work"/*.deb "$work"/*.changes "$work"/*.buildinfo "$here/dist/"
else
    root=$(prepare_chroot)
    say "building in $root"
    rm -rf --one-file-system "$root/build"
    copy_tree "$root/build/cifs-upcall-$version"
    in_chroot "$root" env SOURCE_DATE_EPOCH="$(date -d '2026-12-01 09:00 UTC' +%s)" HOME=/build \
        sh -ec 'cd /build/cifs-upcall-'"$version"'
            dpkg-buildpackage -us -uc -b
            cd /build
            lintian --info --display-info *.changes > lintian.txt 2>&1 || true' >&2 ||
        die "dpkg-buildpackage failed"
    cp "$root/build/"*.deb "$root/build/"*.changes "$root/build/"*.buildinfo \
        "$root/build/lintian.txt" "$here/dist/"
    rm -rf --one-file-system "$root/build"
fi

say "lintian:"
sed 's/^/  /' "$here/dist/lintian.txt" >&2
if grep -q '^E: ' "$here/dist/lintian.txt"; then
    die "lintian reported errors (dist/lintian.txt)"
fi
say "packages in dist/:"
for deb in "$here/dist/"*.deb; do
    say "  $(basename "$deb"): $(dpkg-deb -f "$deb" Depends)"
done
