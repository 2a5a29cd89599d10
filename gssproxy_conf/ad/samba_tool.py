"""The same changes as ``samba-tool`` commands (run on the DC, or add ``-H ldap://dc -U ...``).

samba-tool sets single flags and adds single values, so other bits and grants stay. It refuses
to repeat itself ("already set", "already exists", "ACE ... already present", exit 255); the
script runs each command through ``st``, which treats exactly that refusal of exactly that
command as done, so a second run changes nothing and exits 0, and any other error still stops
it (``set -e``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from .changes import (
    UF_NOT_DELEGATED,
    UF_TRUSTED_TO_AUTH_FOR_DELEGATION,
    AddDelegateTo,
    AddMember,
    AddRbcdTrustee,
    ChangeSet,
    EnsureGroup,
    SetUacBits,
)

# what samba-tool 4.17-4.22 prints when the change is already in place
ALREADY_SET = "already set"  # delegation for-any-protocol, user sensitive
ALREADY_EXISTS = "already exists"  # delegation add-service, group add, group addmembers
ALREADY_PRESENT = "already present"  # delegation add-principal

ST_FUNCTION = """\
# st PATTERN ARGS...: samba-tool ARGS; its refusal matching PATTERN means "already done"
st() {
  pattern=$1; shift
  rc=0; out=$(samba-tool "$@" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    case $out in
      *"$pattern"*) echo "unchanged: samba-tool $*"; return 0 ;;
      *) printf '%s\\n' "$out" >&2; return "$rc" ;;
    esac
  fi
  echo "done: samba-tool $*"
}"""


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]  # without "samba-tool"
    already: str  # the refusal that means it is in place


def commands(cs: ChangeSet, extra: tuple[str, ...] = ()) -> list[Command]:
    out: list[Command] = []
    for ch in cs.changes:
        if isinstance(ch, SetUacBits) and ch.bits == UF_TRUSTED_TO_AUTH_FOR_DELEGATION:
            out.append(Command(("delegation", "for-any-protocol", ch.account, "on"), ALREADY_SET))
        elif isinstance(ch, SetUacBits) and ch.bits == UF_NOT_DELEGATED:
            out.append(Command(("user", "sensitive", ch.account, "on"), ALREADY_SET))
        elif isinstance(ch, AddDelegateTo):
            out += [
                Command(("delegation", "add-service", ch.account, spn), ALREADY_EXISTS)
                for spn in ch.spns
            ]
        elif isinstance(ch, EnsureGroup):
            out.append(Command(("group", "add", ch.name), ALREADY_EXISTS))
        elif isinstance(ch, AddMember):
            out.append(Command(("group", "addmembers", ch.group, ch.member), ALREADY_EXISTS))
        elif isinstance(ch, AddRbcdTrustee):
            out.append(
                Command(("delegation", "add-principal", ch.account, ch.trustee), ALREADY_PRESENT)
            )
    return [Command((*c.argv, *extra), c.already) for c in out]


def render(cs: ChangeSet, extra: tuple[str, ...] = ()) -> str:
    lines = [
        "#!/bin/sh",
        f"# Directory changes for {', '.join(cs.clients)}. Re-runnable: what is already in",
        "# place is reported as unchanged; other bits, values and grants are kept.",
        "set -e",
        ST_FUNCTION,
    ]
    lines += [shlex.join(["st", c.already, *c.argv]) for c in commands(cs, extra)]
    return "\n".join(lines) + "\n"
