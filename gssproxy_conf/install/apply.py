"""Compare a plan with what is on disk, and write it: atomically, and only files we own.

Ownership is the marker line (``marker``). A file without it is someone else's and is never
touched; a marked file whose hash no longer matches was edited by hand and is left alone
unless the caller forces it. All checks happen before the first write, so a refusal writes
nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from upcall import files

from ..errors import Code, MergeConflict, OwnershipError, Problem, WriteError
from ..render.gssproxy import GSSPROXY_DIR
from . import merged
from .marker import Ownership, ownership
from .plan import MANAGED_PATHS, Plan, PlannedFile


class Action(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    REMOVE = "remove"  # ours, no longer in the plan
    REFUSE_FOREIGN = "refuse: not written by gssproxy-conf"
    REFUSE_EDITED = "refuse: edited by hand since it was generated"


@dataclass(frozen=True)
class FileState:
    path: PurePosixPath  # install path
    target: Path  # on disk (under the root)
    current: str | None
    wanted: PlannedFile | None  # None = to be removed
    action: Action


def target_of(root: Path, path: PurePosixPath) -> Path:
    return root / path.relative_to("/")


def _read(p: Path) -> str | None:
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return "\0binary"  # certainly not ours
    except OSError as exc:
        raise WriteError([Problem(Code.IO, f"{p}: cannot read: {exc.strerror}")]) from None


def _decide(current: str | None, wanted: PlannedFile | None, force_edited: bool) -> Action:
    owner = ownership(current)
    if owner is Ownership.FOREIGN:
        return Action.REFUSE_FOREIGN
    if owner is Ownership.EDITED and not force_edited:
        return Action.REFUSE_EDITED
    if wanted is None:
        return Action.REMOVE
    if current is None:
        return Action.CREATE
    return Action.UNCHANGED if current == wanted.content else Action.UPDATE


def assess(plan: Plan, root: Path, force_edited: bool = False) -> list[FileState]:
    states = []
    for f in plan.files:
        t = target_of(root, f.path)
        cur = _read(t)
        states.append(FileState(f.path, t, cur, f, _decide(cur, f, force_edited)))
    planned = {f.path for f in plan.files}
    for path in MANAGED_PATHS:
        if path in planned:
            continue
        t = target_of(root, path)
        cur = _read(t)
        if ownership(cur) in (Ownership.OURS, Ownership.EDITED):
            states.append(FileState(path, t, cur, None, _decide(cur, None, force_edited)))
    return states


def refusals(states: Iterable[FileState]) -> list[Problem]:
    out = []
    for s in states:
        if s.action is Action.REFUSE_FOREIGN:
            out.append(
                Problem(
                    Code.NOT_OWNED,
                    f"{s.target} exists and was not written by "
                    "gssproxy-conf; move it away (or merge it by hand) first",
                )
            )
        elif s.action is Action.REFUSE_EDITED:
            out.append(
                Problem(
                    Code.EDITED,
                    f"{s.target} was edited since gssproxy-conf wrote "
                    "it; review with 'diff', then use --force-edited",
                )
            )
    return out


def write_atomic(target: Path, content: str, mode: int) -> None:
    """The helper's atomic writer (upcall/files.py), for text."""
    files.write_atomic(str(target), content.encode("utf-8"), mode)


def staged_gssproxy(states: list[FileState], root: Path) -> merged.Staged:
    """/etc/gssproxy under ``root`` as it would be after these states are carried out."""
    ours = [s for s in states if s.path.parent == GSSPROXY_DIR]
    writes = [(s.path.name, s.wanted.content) for s in ours if s.wanted is not None]
    removals = [s.path.name for s in ours if s.action is Action.REMOVE]
    return merged.stage(root, writes, removals)


def merge_conflicts(states: list[FileState], root: Path) -> list[Problem]:
    return [
        Problem(Code.GSSPROXY_SET, f"{f.file}:{f.line}: {f.rule.value}: {f.message} ({f.fix})")
        for f in staged_gssproxy(states, root).errors()
    ]


def apply(
    plan: Plan,
    root: Path,
    *,
    dry_run: bool = False,
    force_edited: bool = False,
    trial: Callable[[merged.Staged], list[Problem]] | None = None,
) -> list[FileState]:
    """Write the plan under ``root``; return what was (or, with dry_run, would be) done.
    Nothing is written if a file is not ours, or if the merged gssproxy directory would not be
    accepted (the lint, then ``trial``, e.g. a throwaway gssproxy on the staged set)."""
    states = assess(plan, root, force_edited)
    problems = refusals(states)
    if problems:
        raise OwnershipError(problems)
    problems = merge_conflicts(states, root)
    if not problems and trial is not None:
        problems = trial(staged_gssproxy(states, root))
    if problems:
        raise MergeConflict(problems)
    if not dry_run:
        _carry_out(states)
    return states


def _carry_out(states: list[FileState]) -> None:
    """Write what is created or updated, unlink what is removed; the first failure stops."""
    for s in states:
        try:
            if s.action in (Action.CREATE, Action.UPDATE) and s.wanted is not None:
                write_atomic(s.target, s.wanted.content, s.wanted.mode)
            elif s.action is Action.REMOVE:
                s.target.unlink()
                files.fsync_dir(str(s.target.parent))
        except OSError as exc:
            raise WriteError([Problem(Code.IO, f"{s.target}: {exc.strerror or exc}")]) from None


def assess_removal(
    paths: Iterable[PurePosixPath], root: Path, force_edited: bool = False
) -> list[FileState]:
    """Our marked files among ``paths``: to remove (edited ones refused unless forced).
    Files without the marker, and absent ones, are not ours and are not listed."""
    states = []
    for path in dict.fromkeys(paths):
        t = target_of(root, path)
        cur = _read(t)
        if ownership(cur) in (Ownership.OURS, Ownership.EDITED):
            states.append(FileState(path, t, cur, None, _decide(cur, None, force_edited)))
    return states


def remove(
    paths: Iterable[PurePosixPath],
    root: Path,
    *,
    dry_run: bool = False,
    force_edited: bool = False,
) -> list[FileState]:
    """Take out exactly the files gssproxy-conf wrote (marker present) at ``paths``."""
    states = assess_removal(paths, root, force_edited)
    problems = refusals(states)
    if problems:
        raise OwnershipError(problems)
    problems = merge_conflicts(states, root)
    if problems:
        raise MergeConflict(problems)
    if not dry_run:
        _carry_out(states)  # every state is a REMOVE: assess_removal decides nothing else
    return states
