"""Unified diffs between what is on disk and what the plan wants. Pure."""

from __future__ import annotations

import difflib

from .apply import Action, FileState


def unified(states: list[FileState]) -> str:
    out: list[str] = []
    for s in states:
        if s.action is Action.UNCHANGED:
            continue
        if s.action in (Action.REFUSE_FOREIGN, Action.REFUSE_EDITED):
            out.append(f"# {s.target}: {s.action.value}\n")
        old = (s.current or "").splitlines(keepends=True)
        new = (s.wanted.content if s.wanted else "").splitlines(keepends=True)
        out.extend(
            difflib.unified_diff(
                old,
                new,
                fromfile=str(s.target) if s.current is not None else "/dev/null",
                tofile=str(s.target) if s.wanted is not None else "/dev/null",
            )
        )
    return "".join(out)
