#!/bin/bash
# vm/guest/tests/run.sh: the guest side of `vm/run`, started by vm-run as /vm/run.sh (the host copies
# vm/guest/tests to RUNDIR/tests and this file to RUNDIR/run.sh).
#
#  1. wait for the DC; record versions;
#  2. install the project's Debian packages (RUNDIR/debs/*.deb, built on the host by
#     scripts/build-deb.sh) as an administrator does, with apt (no network: the dependencies are
#     the image's packages); check that cifs-utils' files stay untouched (dpkg -V);
#  3. for each helper (stock cifs.upcall, ours) and each scenario: reset, wire, run, collect
#     RUNDIR/out/results/<helper>/<scenario>.checks and .log, and the journal of that scenario;
#  4. optionally the benchmark (VM_BENCH=1): RUNDIR/out/bench.txt.
# Selection (from RUNDIR/env, written by the host): VM_HELPERS="stock ours", VM_SCENARIOS="10 20 ...".
set -u
VM=/vm
TESTS=$VM/tests
OUT=$VM/out
export TESTS
[ -f "$VM/env" ] && . "$VM/env"
HELPERS=${VM_HELPERS:-stock ours}
export OURS_ARGS=${OURS_ARGS:-}   # extra options in our helper's request-key line (vm/run --ours-args)
SCENARIO_TIMEOUT=${VM_SCENARIO_TIMEOUT:-420}
. "$TESTS/lib.sh"

say() { printf '%s run: %s\n' "$(cut -d' ' -f1 /proc/uptime)" "$*"; }

wait_dc() {
    local p ok
    for _ in $(seq 600); do
        ok=1
        for p in 88 389 445; do
            (exec 3<>"/dev/tcp/192.0.2.10/$p") 2>/dev/null || ok=
        done
        [ -n "$ok" ] && return 0
        sleep 0.5
    done
    return 1
}

mkdir -p "$OUT/results" "$OUT/logs"
say "waiting for the DC"
if ! wait_dc; then
    say "DC ports 88/389/445 never answered"
    systemctl status samba-ad-dc --no-pager > "$OUT/samba-ad-dc.status" 2>&1
    exit 2
fi
say "DC answers"
{
    uname -r
    echo "cifs.ko $(modinfo -F version cifs 2>/dev/null)"
    dpkg-query -W samba cifs-utils gssproxy krb5-user keyutils autofs python3 python3-gssapi \
        python3-keyutils python3-pyroute2 python3-cffi python3-yaml systemd util-linux
} > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"

# gssproxy's packaged services stay out of the way of the harness's own services.
mkdir -p /etc/gssproxy/disabled
for f in /etc/gssproxy/24-nfs-server.conf /etc/gssproxy/99-nfs-client.conf; do
    [ -e "$f" ] && mv "$f" /etc/gssproxy/disabled/
done
modprobe cifs
cp -a "$RKCONF" "$RKCONF_DIST"     # cifs-utils' conffile as shipped, put back between scenarios

# --- our helper: the Debian packages of the working tree -------------------------------------
install_ours() {
    local debs=("$VM"/debs/*.deb)
    [ -e "${debs[0]}" ] || { echo "no packages in $VM/debs"; return 1; }
    mkdir -p /tmp/debs
    cp "${debs[@]}" /tmp/debs/    # apt's _apt user cannot read the 9p share
    # No network in the guest: every dependency must already be in the image.
    # (no --no-download: bookworm's apt then refuses local files, "Pathname to install is not absolute")
    DEBIAN_FRONTEND=noninteractive apt-get install -y /tmp/debs/*.deb || return 1
    dpkg-query -W cifs-upcall gssproxy-conf
    # The image leaves out man pages and docs (dpkg path-exclude): those show up as "missing".
    local changed
    changed=$(dpkg -V cifs-utils | grep -Ev '^missing +/usr/share/(man|doc)/')
    echo "dpkg -V cifs-utils, man/doc exclusions aside: [$changed]"
    [ -z "$changed" ] || { echo "cifs-utils' files changed"; return 1; }
    cat "$OURS_RKCONF"
    # what the maintainer scripts set up where systemd runs: the warm path's socket, tmpfiles.d
    echo "cifs-upcall.socket: $(systemctl is-enabled cifs-upcall.socket) $(systemctl is-active cifs-upcall.socket)"
    stat -c '%A %U %n' /run/cifs-upcall /run/cifs-upcall/upcall.sock /run/gssproxy/cifs
    head -1 "$OURS"
    [ -x "$OURS" ]
}
OURS_OK=
if [[ " $HELPERS " == *" ours "* ]]; then
    say "installing the Debian packages: $(cd "$VM/debs" 2>/dev/null && echo *.deb)"
    if install_ours > "$OUT/install-ours.log" 2>&1; then
        OURS_OK=1
        "$OURS" --help > "$OUT/ours-help.txt" 2>&1
        echo "helper --help rc=$?" >> "$OUT/install-ours.log"
        say "installed: $(ls -l "$OURS")"
    else
        say "installing our helper FAILED (see out/install-ours.log)"
    fi
    cat "$OUT/install-ours.log"
fi

# --- scenarios ---------------------------------------------------------------------------
scenarios=()
for f in "$TESTS"/scenarios/[0-9]*.sh; do
    n=$(basename "$f" .sh)
    if [ -n "${VM_SCENARIOS:-}" ] && [[ " $VM_SCENARIOS " != *" ${n%%-*} "* ]]; then continue; fi
    scenarios+=("$f")
done

for HELPER in $HELPERS; do
    export HELPER
    mkdir -p "$OUT/results/$HELPER" "$OUT/logs/$HELPER"
    for f in "${scenarios[@]}"; do
        n=$(basename "$f" .sh)
        CHECKS=$OUT/results/$HELPER/$n.checks
        : > "$CHECKS"
        export CHECKS
        reset_state
        JCURSOR=$(journalctl -n 0 --show-cursor -q | sed -n 's/^-- cursor: //p')
        export JCURSOR
        title=$(sed -n 's/^TITLE="\(.*\)"$/\1/p' "$f")
        say "=== $HELPER / $n: $title"
        t0=$(now)
        if [ "$HELPER" = ours ] && [ -z "$OURS_OK" ]; then
            fail "our helper is installed" "apt install of the packages failed: $(tail -3 "$OUT/install-ours.log" | tr '\n' ' ')"
        else
            # Each scenario in its own bash, under a deadline, so a hang costs one scenario.
            timeout -k 10 "$SCENARIO_TIMEOUT" bash -c '
                . "$TESTS/lib.sh"; . "$1"; wire "$MODE"; scenario' _ "$f" \
                > "$OUT/logs/$HELPER/$n.log" 2>&1
            rc=$?
            [ $rc = 124 ] && fail "scenario finished in time" "killed after ${SCENARIO_TIMEOUT} s"
            cat "$OUT/logs/$HELPER/$n.log"
        fi
        echo "SECONDS $(elapsed "$t0")" >> "$CHECKS"
        journal_since > "$OUT/logs/$HELPER/$n.journal" 2>&1
        # DC-side evidence: the KDC's and smbd's audit lines of this scenario
        cp /var/log/samba/log.samba "$OUT/logs/$HELPER/$n.samba.log" 2>/dev/null
        : > /var/log/samba/log.samba 2>/dev/null
    done
done
reset_state
say "after the scenarios: dpkg -V cifs-utils: [$(dpkg -V cifs-utils | grep -Ev '^missing +/usr/share/(man|doc)/')]"

if [ "${VM_BENCH:-0}" = 1 ]; then
    # bench.py wires both helpers through cifs-utils' file; our rule would win over both.
    rm -f "$OURS_RKCONF"
    say "=== benchmark"
    # The benchmark needs our helper installed; it reports what it cannot measure.
    timeout -k 10 1200 python3 "$TESTS/bench.py" --rounds "${VM_BENCH_ROUNDS:-7}" \
        --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
    reset_state
fi
say "done"
exit 0
