# 5. autofs multiuser mount with cruid=${UID}, triggered by a user's first access.
TITLE="autofs multiuser cruid=\${UID}, first access"
MODE=own

scenario() {
    local f=s5-alice-$HELPER.txt t
    mkdir -p /etc/auto.master.d /mnt/auto
    echo "/mnt/auto /etc/auto.vm-cifs --timeout=300" > /etc/auto.master.d/vm.autofs
    echo "share -fstype=cifs,multiuser,$MOUNT_OPTS_BASE,cruid=\${UID} ://dc.lab.test/share" > /etc/auto.vm-cifs
    check "autofs starts" systemctl start autofs || return
    check "alice kinit" user_kinit alice
    t=$(now)
    check "alice's first access triggers the automount" as_user alice "ls /mnt/auto/share"
    info "automount + first access" "$(elapsed "$t") s"
    local opts
    opts=$(awk '$2 == "/mnt/auto/share" && $3 == "cifs" { print $4 }' /proc/mounts)
    if echo "$opts" | grep -q multiuser && echo "$opts" | grep -q 'cruid=2001'; then
        pass "mounted multiuser with cruid=2001" "$opts"
    else
        fail "mounted multiuser with cruid=2001" "${opts:-not mounted}"
    fi
    check "alice writes" as_user alice "echo 'alice via autofs $HELPER' > /mnt/auto/share/$f"
    equal "server-side owner is alice (2001)" 2001 "$(server_owner "$f")"
}
