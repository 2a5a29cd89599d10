# 1. multiuser,sec=krb5 mount by root with the machine account; alice with her own ticket reads and
#    writes as alice (owner checked on the server side).
TITLE="multiuser mount (machine acct); alice own ticket"
MODE=own

scenario() {
    local f=s1-alice-$HELPER.txt t
    t=$(now)
    check "root mounts multiuser with CLIENT\$ (keytab)" mount_multiuser /mnt/share || return
    info "mount time" "$(elapsed "$t") s"
    check "alice kinit" user_kinit alice
    t=$(now)
    check "alice lists the share" as_user alice "ls /mnt/share"
    info "alice first access (upcall + session setup)" "$(elapsed "$t") s"
    check "alice writes" as_user alice "echo 'alice via $HELPER' > /mnt/share/$f"
    equal "server-side owner is alice (2001)" 2001 "$(server_owner "$f")"
    check "alice reads it back" as_user alice "grep -q 'alice via $HELPER' /mnt/share/$f"
    info "DebugData sessions" "$(grep -E 'User: [0-9]+' /proc/fs/cifs/DebugData | tr -s ' ' | tr '\n' ';')"
    if [ "$HELPER" = ours ]; then
        ours_log_check "log line for alice names principal and source" 'principal=alice@' 'source='
    fi
}
