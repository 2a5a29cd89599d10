#!/usr/bin/env bash
# Installs dist/*.deb into a throw-away copy of a Debian root that has cifs-utils, and checks what
# an administrator would: the tools on PATH under /usr, the man pages, request-key's choice for a
# cifs.spnego description, cifs-utils' files untouched, no lab or build package pulled in, and
# that "apt remove" gives the choice back to cifs.upcall (then reinstall and purge). Run as root.
#
#   bash scripts/try-deb.sh ROOT      ROOT: a debootstrapped Debian 12/13 root (it is not modified;
#                                     the checks run in a copy, deleted afterwards)
# Needs network access to the Debian mirror (apt resolves the dependencies). Exit 0 when all pass.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
base=${1:?usage: try-deb.sh ROOT}
[ "$(id -u)" = 0 ] || { echo "try-deb.sh: run as root" >&2; exit 1; }
ls "$here"/dist/*.deb > /dev/null || { echo "try-deb.sh: no dist/*.deb (scripts/build-deb.sh)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/try-deb.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
root=$work/root
cp -a "$base" "$root"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/tmp/dist"
cp "$here"/dist/*.deb "$root/tmp/dist/"
chmod -R a+rX "$root/tmp/dist"

# The commands run in the copy, in private mount and pid namespaces (the /proc mounted there
# goes away with them). No systemd runs there: the maintainer scripts must cope.
cat > "$root/tmp/checks.sh" <<'EOF'
set -u
fails=0
step() { printf '\n$ %s\n' "$*"; }
ok() { printf 'PASS %s\n' "$*"; }
bad() { printf 'FAIL %s\n' "$*"; fails=$((fails + 1)); }
desc='cifs.spnego;0;0;39010000;ver=0x2;host=fs1.example.com;ip4=192.0.2.10;sec=krb5;uid=0x3e8;creduid=0x3e8;pid=0x1a2b'
choice() { /sbin/request-key -d -n -v -D "$desc" create 1 0 0 0 0 0 x 2>&1; }
cd /tmp
dpkg-query -W -f '${Package}\n' | sort > before.txt

step "dpkg-query -W cifs-utils keyutils"; dpkg-query -W cifs-utils keyutils
step "cat /etc/request-key.d/cifs.spnego.conf"; cat /etc/request-key.d/cifs.spnego.conf
step "apt-get install -y ./dist/*.deb"
if DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./dist/*.deb > apt-install.log 2>&1; then
    ok "apt install"; tail -12 apt-install.log
else
    bad "apt install"; tail -30 apt-install.log
fi
dpkg-query -W -f '${Package}\n' | sort > after.txt
step "packages the install added"; comm -13 before.txt after.txt | tr '\n' ' '; echo
lab=$(comm -13 before.txt after.txt | grep -E '^(samba|krb5-kdc|qemu|debootstrap|python3-pytest|python3-hypothesis|ruff|mypy|python3-pip|python3-venv|debhelper|dh-python|lintian|build-essential|gcc|python3-setuptools|smbclient|winbind)' || true)
if [ -z "$lab" ]; then ok "no lab, test or build package"; else bad "lab/build packages: $lab"; fi

step "command -v cifs-upcall gssproxy-conf"; command -v cifs-upcall gssproxy-conf
step "cifs-upcall --version"; cifs-upcall --version && ok "helper runs from /usr/sbin" || bad "helper"
step "gssproxy-conf --help | head -3"; gssproxy-conf --help | head -3
[ "${PIPESTATUS[0]}" = 0 ] && ok "generator runs from /usr/sbin" || bad "generator"
step "python3 -c 'import upcall, upcall._native, gssproxy_conf; print(upcall.__file__, upcall._native.__file__)'"
python3 -c 'import upcall, upcall._native, gssproxy_conf; print(upcall.__file__, upcall._native.__file__)' &&
    ok "dist-packages" || bad "dist-packages"
for page in cifs-upcall.8 gssproxy-conf.8 cifs-upcall-policy.5; do
    f=$(dpkg -L cifs-upcall gssproxy-conf | grep "/$page.gz$")
    step "man -l $f | head -4"
    if MANWIDTH=90 man -l "$f" 2> man.err | head -4 && [ ! -s man.err ]; then ok "man $page"; else bad "man $page: $(cat man.err)"; fi
done
step "MANWIDTH=90 man 8 cifs-upcall | sed -n '/^TROUBLESHOOTING/,+4p'"
MANWIDTH=90 man 8 cifs-upcall 2>&1 | sed -n '/^TROUBLESHOOTING/,+4p'
step "ls -l /etc/request-key.d/"; ls -l /etc/request-key.d/
step "cat /etc/request-key.d/cifs-upcall.conf | grep -v '^#'"; grep -v '^#' /etc/request-key.d/cifs-upcall.conf
step "ls -ld /run/gssproxy/cifs /run/cifs-upcall (tmpfiles.d)"; ls -ld /run/gssproxy/cifs /run/cifs-upcall
step "/sbin/request-key -d -n -v -D '$desc' create 1 0 0 0 0 0 x"; choice | tee rk.txt
grep -q 'Run .*/usr/sbin/cifs-upcall' rk.txt && ok "request-key picks /usr/sbin/cifs-upcall" || bad "request-key choice"
step "dpkg -V cifs-utils"; v=$(dpkg -V cifs-utils); echo "[$v]"
[ -z "$v" ] && ok "dpkg -V cifs-utils prints nothing" || bad "cifs-utils changed"

step "apt-get remove -y cifs-upcall gssproxy-conf"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q cifs-upcall gssproxy-conf 2>&1 | tail -4
step "ls -l /etc/request-key.d/"; ls -l /etc/request-key.d/
step "/sbin/request-key -d -n -v -D ... (after remove)"; choice | tee rk2.txt
grep -q 'Run .*/usr/sbin/cifs.upcall' rk2.txt && ok "after remove: cifs.upcall again" || bad "after remove"
step "dpkg -V cifs-utils"; v=$(dpkg -V cifs-utils); echo "[$v]"; [ -z "$v" ] && ok "cifs-utils untouched" || bad "cifs-utils"

step "apt-get install -y ./dist/*.deb (again), then apt-get purge -y cifs-upcall gssproxy-conf"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./dist/*.deb > /dev/null 2>&1
choice | grep -q 'Run .*/usr/sbin/cifs-upcall' && ok "reinstall: the rule is back" || bad "reinstall"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q cifs-upcall gssproxy-conf > /dev/null 2>&1
ls /etc/request-key.d/
[ ! -e /etc/request-key.d/cifs-upcall.conf.dpkg-removed ] && [ ! -e /etc/request-key.d/cifs-upcall.conf ] &&
    ok "purge: no rule left" || bad "purge"
choice | grep -q 'Run .*/usr/sbin/cifs.upcall' && ok "after purge: cifs.upcall" || bad "after purge"
printf '\ntry-deb: %s failed\n' "$fails"
exit "$fails"
EOF
unshare --mount --pid --fork chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LC_ALL=C.UTF-8 TERM=dumb sh -c 'mount -t proc proc /proc; exec bash /tmp/checks.sh'
