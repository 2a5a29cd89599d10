# 7. upcall_target=mount: the mount's credentials, not the caller's.
#    The mounting process runs in a private mount namespace where /tmp/krb5cc_2001 (and its
#    KRB5CCNAME) holds *bob's* TGT; in the host's namespaces /tmp/krb5cc_2001 holds alice's.
#    With upcall_target=mount the helper must stay in the mount's (host) namespaces: owner alice.
#    Control: the same mount with upcall_target=app uses the caller's view: owner bob.
TITLE="upcall_target=mount vs app"
MODE=own

# mount_in_private_ns TARGET FILE : mount with cruid=2001 from a private mount ns, write FILE
mount_in_private_ns() {
    local target=$1 file=$2
    unshare --mount --propagation private sh -c "
        mount -t tmpfs -o mode=1777 nstmp /tmp &&
        cp /root/vm/s7-bob.cc /tmp/krb5cc_2001 && chown alice /tmp/krb5cc_2001 &&
        export KRB5CCNAME=FILE:/tmp/krb5cc_2001 &&
        mkdir -p /mnt/s7 &&
        timeout 120 mount -t cifs $SHARE /mnt/s7 -o $MOUNT_OPTS_BASE,cruid=2001,upcall_target=$target &&
        echo 'via $HELPER upcall_target=$target' > /mnt/s7/$file; rc=\$?; umount /mnt/s7; exit \$rc"
}

scenario() {
    check "alice kinit (host ccache)" user_kinit alice
    check "bob's TGT for the private namespace" kinit_into /root/vm/s7-bob.cc bob root
    local f=s7-mount-$HELPER.txt g=s7-app-$HELPER.txt
    check "mount upcall_target=mount from a private mount ns, write" mount_in_private_ns mount "$f"
    equal "upcall_target=mount: server-side owner is alice (2001), the mount's credentials" \
        2001 "$(server_owner "$f")"
    flush_spnego_keys
    check "mount upcall_target=app from a private mount ns, write" mount_in_private_ns app "$g"
    equal "control, upcall_target=app: owner is bob (2002), the caller's credentials" \
        2002 "$(server_owner "$g")"
}
