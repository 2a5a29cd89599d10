# 3. carol's TGT has expired: our helper falls back to impersonation under local-first.
#    (stock: cifs.upcall with GSS_USE_PROXY=yes, same request; its result is reported as is.)
TITLE="carol, expired TGT: fallback to impersonation"
MODE=proxy

scenario() {
    local f=s3-carol-$HELPER.txt t
    check "root mounts multiuser with CLIENT\$ (keytab)" mount_multiuser /mnt/share || return
    check "carol kinit with a 15 s lifetime" user_kinit carol 15s
    t=$(now)
    while as_user carol "klist -s" && [ "$(elapsed "$t" | cut -d. -f1)" -lt 60 ]; do sleep 1; done
    expect_fail "carol's TGT has expired" as_user carol "klist -s"
    info "carol's ccache" "$(as_user carol 'klist' 2>&1 | tr '\n' ';')"
    t=$(now)
    check "carol lists the share" as_user carol "ls /mnt/share"
    info "carol first access" "$(elapsed "$t") s"
    check "carol writes" as_user carol "echo 'carol via $HELPER' > /mnt/share/$f"
    equal "server-side owner is carol (2003)" 2003 "$(server_owner "$f")"
    if [ "$HELPER" = ours ]; then
        ours_log_check "log line for carol says impersonated after the expired TGT" 'principal=carol@' 'source=(proxy|gssproxy|impersonat)'
    fi
}
