"""The client files of a fleet: given on the command line, or listed in a fleet file

    fleet: [client1.yaml, client2.yaml]     # paths relative to the fleet file

so that ``ad`` renders one change set for the directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import Code, ConfigError, Location, Problem
from ..model import Config
from ..yaml_loader import YMap, YScalar, YSeq, load_text


def client_files(path: str) -> list[str]:
    """``[path]`` for a client file; the listed files for a fleet file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return [path]  # the client loader reports it
    root = load_text(text, path)
    if not isinstance(root, YMap) or "fleet" not in root.entries:
        return [path]
    problems = [
        Problem(Code.UNKNOWN_KEY, f"a fleet file holds only 'fleet', not {key!r}", loc)
        for key, (loc, _) in root.entries.items()
        if key != "fleet"
    ]
    loc, node = root.entries["fleet"]
    items = node.items if isinstance(node, YSeq) else []
    if not items:
        problems.append(Problem(Code.BAD_VALUE, "fleet must list client files", loc))
    out = []
    for item in items:
        if not isinstance(item, YScalar) or not isinstance(item.value, str):
            problems.append(Problem(Code.BAD_TYPE, "expected a file name", item.loc))
            continue
        out.append(str(Path(path).parent / item.value))
    if problems:
        raise ConfigError(problems)
    return out


def load_all(paths: list[str], load: Callable[[str], Config]) -> list[Config]:
    files = [f for p in paths for f in client_files(p)]
    if len(set(files)) != len(files):
        raise ConfigError(
            [Problem(Code.CONFLICT, "a client file is listed twice", Location(files[0], 0))]
        )
    return [load(f) for f in files]
