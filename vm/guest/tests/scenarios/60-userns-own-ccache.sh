# 6. A process in its own user+mount namespace with its own KRB5CCNAME: that ccache is used, the
#    host's never. The host's default ccache of uid 2001 holds *bob's* TGT, the namespace's private
#    ccache (on a tmpfs only that mount namespace sees) holds alice's: the file owner on the server
#    tells which one the helper used. The access is made by a process exec'd after the export
#    (tee): /proc/<pid>/environ, where helpers read KRB5CCNAME, holds only the exec-time
#    environment, so a shell's own redirection after `export` would not carry it.
TITLE="user+mount ns with own KRB5CCNAME"
MODE=own

scenario() {
    local f=s6-ns-$HELPER.txt t out
    check "root mounts multiuser with CLIENT\$ (keytab)" mount_multiuser /mnt/share || return
    check "host ccache of uid 2001 holds bob's TGT" kinit_into /tmp/krb5cc_2001 bob alice
    # Identity-mapped user namespace (uid 2001 stays 2001), capabilities kept to mount the tmpfs.
    t=$(now)
    out=$(as_user alice "unshare --user --map-current-user --keep-caps --mount --propagation private sh -c '
        mount -t tmpfs -o mode=1777 nstmp /tmp &&
        export KRB5CCNAME=FILE:/tmp/ns-alice.cc &&
        kinit alice@$REALM >/dev/null &&
        echo \"alice from a namespace via $HELPER\" | tee /mnt/share/$f >/dev/null &&
        echo ns-ccache: && klist 2>&1'" < "$PWDIR/alice.pw" 2>&1)
    local rc=$?
    if [ $rc = 0 ]; then pass "write from the namespace" "$(echo "$out" | tr '\n' ';' | cut -c1-300)"
    else fail "write from the namespace" "rc=$rc $(echo "$out" | tr '\n' ';' | cut -c1-300)"; fi
    info "namespace access" "$(elapsed "$t") s"
    equal "server-side owner is alice (2001): the namespace's ccache was used" 2001 "$(server_owner "$f")"
    local host
    host=$(KRB5CCNAME=FILE:/tmp/krb5cc_2001 klist 2>&1)
    if echo "$host" | grep -q 'cifs/'; then
        fail "host ccache untouched (no cifs/ ticket)" "$(echo "$host" | tr '\n' ';')"
    else
        pass "host ccache untouched (no cifs/ ticket)" "$(echo "$host" | grep -c krbtgt) TGT only"
    fi
    # Evidence only: the rootless-container mapping (root inside = 2001 outside).
    rm -f "$SRV/s6-rootmap-$HELPER.txt"
    out=$(as_user alice "unshare --map-root-user --mount --propagation private sh -c '
        mount -t tmpfs -o mode=1777 nstmp /tmp && export KRB5CCNAME=FILE:/tmp/ns.cc &&
        kinit alice@$REALM >/dev/null && echo x | tee /mnt/share/s6-rootmap-$HELPER.txt >/dev/null'" \
        < "$PWDIR/alice.pw" 2>&1)
    info "root-mapped userns variant" "rc=$? owner=$(server_owner "s6-rootmap-$HELPER.txt") $(echo "$out" | tr '\n' ';' | cut -c1-200)"
}
