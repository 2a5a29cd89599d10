# 45. journald fields (issue #13): after dave's refused access (as in 40), journald holds one
#     structured entry for it, selectable by reason and uid, with the catalog's text under -x.
TITLE="dave refused: one structured journald entry (CIFS_UPCALL_REASON=s4u2proxy-refused)"
MODE=proxy

scenario() {
    check "root mounts multiuser with CLIENT\$ (keytab)" mount_multiuser /mnt/share || return
    expect_fail "dave is refused" as_user dave "ls /mnt/share"
    if [ "$HELPER" != ours ]; then
        info "cifs.upcall log" "$(journal_since -t cifs.upcall | tail -2 | tr '\n' ';')"
        return
    fi
    local json n
    # the issue's own query (one field); dave's entry among what it returns
    json=$(journal_since -o json CIFS_UPCALL_REASON=s4u2proxy-refused | grep "\"CIFS_UPCALL_UID\":\"${UIDOF[dave]}\"")
    n=$(printf '%s\n' "$json" | grep -c '^{')
    equal "journalctl -o json CIFS_UPCALL_REASON=s4u2proxy-refused returns dave's entry" 1 "$([ "$n" -ge 1 ] && echo 1 || echo 0)"
    info "entries for dave" "$n"
    info "last cifs-upcall entry (fields)" "$(journal_since -o json -t cifs-upcall | tail -1 | grep -o '"\(CIFS_UPCALL_[A-Z_]*\|MESSAGE_ID\|_TRANSPORT\)":"[^"]\{0,40\}' | tr '\n' ' ')"
    info "journalctl version" "$(journalctl --version | head -1)"
    if printf '%s' "$json" | grep -q '"_TRANSPORT":"journal"'; then
        pass "sent with journald's native protocol" "$(printf '%s' "$json" | head -1 | grep -o '"CIFS_UPCALL_[A-Z_]*":"[^"]\{0,60\}' | tr '\n' ' ' | cut -c1-300)"
    else
        fail "sent with journald's native protocol" "$(printf '%s' "$json" | head -1 | cut -c1-300)"
    fi
    if printf '%s' "$json" | grep -q '"MESSAGE_ID":"d4f6a8c0e2b44d6f8a0c2e4b6d8f0a17"'; then
        pass "MESSAGE_ID of the impersonation-refused class" "d4f6a8c0e2b44d6f8a0c2e4b6d8f0a17"
    else
        fail "MESSAGE_ID of the impersonation-refused class" "$(printf '%s' "$json" | grep -o '"MESSAGE_ID":"[^"]*"' | head -1)"
    fi
    local cat=/usr/lib/systemd/catalog/cifs-upcall.catalog
    if [ -f "$cat" ]; then  # installed by the package (systemd's trigger updates the catalog)
        journalctl --update-catalog
        local x
        x=$(journal_since -x CIFS_UPCALL_REASON=s4u2proxy-refused | grep '░░ Subject' | head -1)
        if [ -n "$x" ]; then pass "journalctl -x shows the catalog's text" "$x"; else fail "journalctl -x shows the catalog's text" "no Subject line"; fi
    else
        fail "catalog installed by the package" "no $cat"
    fi
}
