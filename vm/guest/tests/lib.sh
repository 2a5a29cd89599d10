# vm/guest/tests/lib.sh: shared functions for the guest scenarios (sourced, bash).
#
# Result protocol: every check appends one line to $CHECKS (set by run.sh per helper and scenario):
#   PASS <name> | <detail>      FAIL <name> | <detail>      INFO <name> | <detail>
# A scenario passes when it has at least one PASS and no FAIL. INFO lines are evidence only.

SHARE=//dc.lab.test/share
SRV=/srv/share                 # the server's side of the share (the DC runs in this guest)
REALM=LAB.TEST
PWDIR=/root/vm
OURS=/usr/sbin/cifs-upcall            # from the cifs-upcall package (run.sh installs it)
STOCK=/usr/sbin/cifs.upcall
RKCONF=/etc/request-key.d/cifs.spnego.conf     # cifs-utils' conffile: only the stock wiring edits it
OURS_RKCONF=/etc/request-key.d/cifs-upcall.conf  # the package's rule ("ver=0x2;*" beats "* *")
OURS_RKSAVE=/root/vm/cifs-upcall.conf.packaged
RKCONF_DIST=/root/vm/cifs.spnego.conf.dist
declare -A UIDOF=([alice]=2001 [bob]=2002 [carol]=2003 [dave]=2004)
MOUNT_OPTS_BASE="sec=krb5,vers=3.1.1,noperm,cache=none,echo_interval=10"

# --- results ----------------------------------------------------------------------------------
_result() {
    local kind=$1 name=$2
    shift 2
    printf '%s %s | %s\n' "$kind" "$name" "$*" >> "$CHECKS"
    printf '    %s %s | %s\n' "$kind" "$name" "$*"
}
pass() { _result PASS "$@"; }
fail() { _result FAIL "$@"; }
info() { _result INFO "$@"; }
# check NAME CMD... : PASS when CMD exits 0 (its output becomes the detail), else FAIL.
check() {
    local name=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    out=$(printf '%s' "$out" | tr '\n' ' ' | cut -c1-300)
    if [ $rc = 0 ]; then pass "$name" "$out"; else fail "$name" "rc=$rc $out"; fi
    return $rc
}
# expect_fail NAME CMD... : PASS when CMD fails.
expect_fail() {
    local name=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    out=$(printf '%s' "$out" | tr '\n' ' ' | cut -c1-300)
    if [ $rc != 0 ]; then pass "$name" "rc=$rc $out"; else fail "$name" "unexpectedly succeeded: $out"; fi
}
# equal NAME WANT GOT
equal() {
    if [ "$2" = "$3" ]; then pass "$1" "$3"; else fail "$1" "want '$2', got '$3'"; fi
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# --- users, tickets --------------------------------------------------------------------------
# as_user USER SHELL-COMMAND : run in a clean login-like environment (no KRB5CCNAME unless given).
as_user() {
    local u=$1
    shift
    timeout 90 runuser -u "$u" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="/home/$u" \
        USER="$u" LOGNAME="$u" ${VM_USER_ENV:-} bash -c "$*"
}
# user_kinit USER [LIFETIME] : a TGT in the user's default ccache (FILE:/tmp/krb5cc_<uid>).
user_kinit() {
    local u=$1 life=${2:-10h}
    as_user "$u" "kinit -l $life $u@$REALM" < "$PWDIR/$u.pw" > /dev/null
}
# kinit_into CCACHE USER OWNER : a TGT for USER in CCACHE (a FILE: path), owned by OWNER.
kinit_into() {
    KRB5CCNAME=FILE:$1 kinit "$2@$REALM" < "$PWDIR/$2.pw" > /dev/null && chown "$3" "$1"
}
server_owner() { stat -c %u "$SRV/$1" 2>&1; }

# --- mounts --------------------------------------------------------------------------------
# root's multiuser mount with the machine account (CLIENT$ from /etc/krb5.keytab)
mount_multiuser() {
    local mnt=${1:-/mnt/share}
    mkdir -p "$mnt"
    timeout 120 mount -t cifs "$SHARE" "$mnt" -o "$MOUNT_OPTS_BASE,multiuser,user=CLIENT\$"
}

# --- the kernel's key cache -----------------------------------------------------------------
spnego_keyring() { awk '$9 == ".cifs_spnego:" || $9 == ".cifs_spnego" { print $1 }' /proc/keys | head -1; }
# negative cifs.spnego keys whose description matches $1 (a regex)
negative_keys() { awk -v re="$1" '$8 ~ /^cifs\.spne/ && $2 ~ /N/ && $0 ~ re' /proc/keys; }
flush_spnego_keys() {
    local kr
    kr=$(spnego_keyring)
    [ -n "$kr" ] && keyctl clear "0x$kr" > /dev/null 2>&1
    return 0
}

# --- logs ----------------------------------------------------------------------------------
# Journal lines since the scenario started (run.sh sets JCURSOR).
journal_since() { journalctl --no-pager -q -o short-monotonic --after-cursor="$JCURSOR" "$@"; }
# our helper's one-line-per-upcall records
ours_lines() { journal_since -t cifs-upcall | grep 'outcome='; }

# --- wiring the helper under test ----------------------------------------------------------
# wire MODE : MODE is "own" (no impersonation) or "proxy" (gssproxy impersonation allowed).
# stock: cifs.upcall; for "proxy" with GSS_USE_PROXY=yes and a gssproxy service (the cifs-utils way).
# ours:  /usr/sbin/cifs-upcall through the package's own rule file, cifs-utils' file untouched;
#        for "proxy" the policy allows impersonation (local-first) through a root-only gssproxy
#        socket. The stock wiring takes our rule away (kept in $OURS_RKSAVE), as removing the
#        package would.
ours_rule() {
    echo "create cifs.spnego ver=0x2;* * $OURS ${OURS_ARGS:+$OURS_ARGS }%k" > "$OURS_RKCONF"
}
wire() {
    local mode=$1
    rm -f /etc/gssproxy/5*-vm-*.conf /etc/cifs-upcall/policy.yaml
    [ -e "$OURS_RKCONF" ] && [ ! -e "$OURS_RKSAVE" ] && cp "$OURS_RKCONF" "$OURS_RKSAVE"
    rm -f "$OURS_RKCONF"
    case $HELPER:$mode in
        stock:own)
            echo "create cifs.spnego * * $STOCK %k" > "$RKCONF" ;;
        stock:proxy)
            echo "create cifs.spnego * * /usr/bin/env GSS_USE_PROXY=yes $STOCK %k" > "$RKCONF"
            install -m 644 "$TESTS/helpers/stock-gssproxy.conf" /etc/gssproxy/50-vm-stock.conf ;;
        ours:own)
            mkdir -p /etc/cifs-upcall
            install -m 644 "$TESTS/helpers/ours-policy-own.yaml" /etc/cifs-upcall/policy.yaml
            ours_rule ;;
        ours:proxy)
            mkdir -p /etc/cifs-upcall
            install -m 644 "$TESTS/helpers/ours-policy-local-first.yaml" /etc/cifs-upcall/policy.yaml
            install -m 644 "$TESTS/helpers/ours-gssproxy.conf" /etc/gssproxy/50-vm-ours.conf
            install -d -m 700 /run/gssproxy/cifs
            ours_rule ;;
    esac
    # gssproxy runs only when the scenario allows impersonation (with no service it refuses to start).
    if [ "$mode" = proxy ]; then systemctl restart gssproxy; else systemctl stop gssproxy; fi
    info wiring "$HELPER/$mode: $(cat "$RKCONF" "$OURS_RKCONF" 2>/dev/null | grep -v '^#' | tr '\n' ';')"
    if [ "$HELPER" = ours ]; then
        # The choice request-key makes for a kernel-like description (-n: nothing is run).
        info "request-key picks" "$(/sbin/request-key -d -n -v -D \
            'cifs.spnego;0;0;39010000;ver=0x2;host=dc.lab.test;ip4=192.0.2.10;sec=krb5;uid=0x7d1;creduid=0x7d1' \
            create 1 0 0 0 0 0 x 2>&1 | grep -E '^(Line|Run|Match)' | tr '\n' ' ' | cut -c1-300)"
    fi
}

# Back to a clean state between scenarios: no cifs mounts, no automounts, no user tickets,
# no cached (negative) spnego keys, stock request-key wiring, no harness gssproxy services.
reset_state() {
    systemctl stop autofs > /dev/null 2>&1
    rm -f /etc/auto.master.d/vm.autofs /etc/auto.vm-cifs
    umount -a -t cifs -l > /dev/null 2>&1
    rm -f /tmp/krb5cc_* /root/vm/*.cc
    flush_spnego_keys
    # cifs-utils' file exactly as packaged (run.sh saved it before the first scenario)
    if [ -e "$RKCONF_DIST" ]; then
        cp -a "$RKCONF_DIST" "$RKCONF"
    else
        echo "create cifs.spnego * * $STOCK %k" > "$RKCONF"
    fi
    # our package's rule as installed (the scenarios rewrite it)
    [ -e "$OURS_RKSAVE" ] && cp "$OURS_RKSAVE" "$OURS_RKCONF"
    rm -f /etc/gssproxy/5*-vm-*.conf /etc/cifs-upcall/policy.yaml
    return 0
}

# ours_log_check NAME REGEX... : PASS when one of our helper's outcome= lines of this scenario
# matches every REGEX (grep -E -i); the matching line is the detail.
ours_log_check() {
    local name=$1 lines re
    shift
    lines=$(ours_lines)
    for re in "$@"; do
        lines=$(printf '%s\n' "$lines" | grep -Ei -- "$re")
    done
    if [ -n "$lines" ]; then
        pass "$name" "$(printf '%s\n' "$lines" | tail -1)"
    else
        fail "$name" "no outcome= line matching: $* (last: $(ours_lines | tail -2 | tr '\n' ';'))"
    fi
}

# ours_dry_run USER : our helper's --dry-run for a kernel-like description of USER's first access
# (pid = a live process of USER), as evidence: the decision trail, or the traceback.
ours_dry_run() {
    local u=$1 uid=${UIDOF[$1]} p out
    runuser -u "$u" -- sleep 120 &
    sleep 0.5
    p=$(pgrep -u "$u" -n sleep)
    out=$(timeout 60 "$OURS" --dry-run \
        "ver=0x2;host=dc.lab.test;ip4=192.0.2.10;sec=krb5;uid=0x$(printf %x "$uid");creduid=0x$(printf %x "$uid");pid=0x$(printf %x "$p");upcall_target=app" \
        --json 2>&1)
    echo "rc=$? $out" | tr '\n' ' ' | cut -c1-1500
    kill "$p" 2>/dev/null
    return 0
}
