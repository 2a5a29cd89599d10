#!/bin/sh
# Directory changes for FS-CLIENT1$@EXAMPLE.COM. Re-runnable: what is already in
# place is reported as unchanged; other bits, values and grants are kept.
set -e
# st PATTERN ARGS...: samba-tool ARGS; its refusal matching PATTERN means "already done"
st() {
  pattern=$1; shift
  rc=0; out=$(samba-tool "$@" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    case $out in
      *"$pattern"*) echo "unchanged: samba-tool $*"; return 0 ;;
      *) printf '%s\n' "$out" >&2; return "$rc" ;;
    esac
  fi
  echo "done: samba-tool $*"
}
st 'already set' delegation for-any-protocol 'FS-CLIENT1$' on
st 'already present' delegation add-principal 'FS1$' 'FS-CLIENT1$'
st 'already present' delegation add-principal 'FILESRV7$' 'FS-CLIENT1$'
st 'already present' delegation add-principal 'NFS1$' 'FS-CLIENT1$'
st 'already set' user sensitive backup on
st 'already set' user sensitive svc-db on
