# 4. dave is in Protected Users (no delegation): access is refused, the kernel gets a negated key
#    promptly, and the log line names the reason.
TITLE="dave, Protected Users: refused, negative key"
MODE=proxy
PROMPT_S=${PROMPT_S:-20}   # "promptly" under TCG; the measured time is reported

scenario() {
    local t secs
    check "root mounts multiuser with CLIENT\$ (keytab)" mount_multiuser /mnt/share || return
    t=$(now)
    expect_fail "dave is refused" as_user dave "ls /mnt/share"
    secs=$(elapsed "$t")
    if awk -v s="$secs" -v m="$PROMPT_S" 'BEGIN { exit !(s < m) }'; then
        pass "refusal is prompt (< ${PROMPT_S} s)" "$secs s"
    else
        fail "refusal is prompt (< ${PROMPT_S} s)" "$secs s"
    fi
    local neg
    neg=$(negative_keys 'creduid=0x7d4')
    if [ -n "$neg" ]; then
        pass "kernel holds a negative cifs.spnego key for dave" "$(echo "$neg" | head -1 | tr -s ' ')"
    else
        fail "kernel holds a negative cifs.spnego key for dave" \
            "none; /proc/keys: $(grep cifs /proc/keys | tr -s ' ' | tr '\n' ';')"
    fi
    info "kernel log" "$(journal_since -k | grep -i cifs | tail -3 | tr '\n' ';')"
    if [ "$HELPER" = ours ]; then
        local line
        line=$(journal_since -t cifs-upcall | grep 'outcome=' | grep -E 'dave|creduid=0x7d4|uid=2004' | tail -1)
        if echo "$line" | grep -Eiq 'reason=[^ ]*(protect|delegat|forwardable|s4u|not.?allowed|policy)'; then
            pass "log line names the reason" "$line"
        else
            fail "log line names the reason" "${line:-no outcome= line for dave}"
        fi
        info "dry-run for dave" "$(ours_dry_run dave)"
    else
        info "cifs.upcall log" "$(journal_since -t cifs.upcall | tail -3 | tr '\n' ';')"
    fi
}
