# 2. bob has no ticket at all and reaches the share through gssproxy impersonation
#    (stock: cifs.upcall with GSS_USE_PROXY=yes).
TITLE="bob, no ticket: gssproxy impersonation"
MODE=proxy

scenario() {
    local f=s2-bob-$HELPER.txt t
    check "root mounts multiuser with CLIENT\$ (keytab)" mount_multiuser /mnt/share || return
    expect_fail "bob has no ccache" as_user bob "klist -s"
    t=$(now)
    check "bob lists the share" as_user bob "ls /mnt/share"
    info "bob first (impersonated) access" "$(elapsed "$t") s"
    check "bob writes" as_user bob "echo 'bob via $HELPER' > /mnt/share/$f"
    equal "server-side owner is bob (2002)" 2002 "$(server_owner "$f")"
    expect_fail "bob still has no ccache of his own" as_user bob "klist -s"
    info "gssproxy log" "$(journal_since -u gssproxy | grep -E 'GSSX_|connected|rror' | tail -4 | tr '\n' ';')"
    if [ "$HELPER" = ours ]; then
        ours_log_check "log line for bob says impersonated via gssproxy" 'principal=bob@' 'source=(proxy|gssproxy|impersonat)'
    fi
}
