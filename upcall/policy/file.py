"""Load the policy file: trust checks on the file and its directories, then a strict parse.

The file decides whom root may impersonate, so it is refused unless root owns it and every
directory above it, and none of them is group- or world-writable (a sticky directory such as
/tmp is allowed: others cannot replace root's entries in it). Parsing uses PyYAML's compose
API so every error names file:line; unknown keys, duplicate keys and wrong types are errors.
Any error fails the upcall closed (Reason.BAD_POLICY): a broken policy never means "allow".

A missing file at the default path means the built-in defaults: local-first with no gssproxy
socket, i.e. the helper never impersonates until an administrator writes a policy. A missing
file named explicitly (--policy) is an error.
"""

from __future__ import annotations

import os
import stat

from ..errors import BadPolicy
from ..paths import POLICY_FILE
from .rules import Policy

DEFAULT_PATH = POLICY_FILE
MAX_SIZE = 1 << 20


def _check_trust(path: str) -> None:
    """Refuse a policy that someone other than root could have written."""
    chain = [path]
    for p in (path, os.path.realpath(path)):
        d = os.path.dirname(os.path.abspath(p))
        while True:
            chain.append(d)
            if d == "/":
                break
            d = os.path.dirname(d)
    for i, p in enumerate(chain):
        st = os.stat(p) if i else os.lstat(p)
        if i == 0 and stat.S_ISLNK(st.st_mode):
            st = os.stat(p)  # a symlink's target is checked like any file; its dir chain above
        if st.st_uid != 0:
            raise BadPolicy(f"{path}: {p} is owned by uid {st.st_uid}, not root")
        sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
        if st.st_mode & 0o022 and not sticky_dir:
            raise BadPolicy(
                f"{path}: {p} is group- or world-writable (mode {st.st_mode & 0o7777:o})"
            )


def read_trusted(path: str) -> str:
    """Handler, root, host namespaces: the policy text, only if root alone could have written it.
    Raises BadPolicy."""
    _check_trust(path)
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        # the file opened is the one checked (not swapped in between) and a regular file
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            raise BadPolicy(f"{path}: not a regular root-owned, non-writable file")
        if st.st_size > MAX_SIZE:
            raise BadPolicy(f"{path}: larger than {MAX_SIZE} bytes")
        return os.read(fd, MAX_SIZE + 1).decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadPolicy(f"{path}: not UTF-8 ({e.reason})") from e
    finally:
        os.close(fd)


_parsed: dict[tuple[str, str], Policy] = {}  # (path, text) -> its policy; see parse()
PARSED_MAX = 8


def parse(text: str, path: str) -> Policy:
    """Parse policy text (see policy_yaml); BadPolicy lists every problem with file:line.
    A text parsed before in this process (or in the daemon before it forked this handler:
    it loads the policies its handlers used) is not parsed again: the file is still checked
    and read every time, only the YAML work is saved."""
    from . import parse as policy_yaml

    hit = _parsed.get((path, text))
    if hit is not None:
        return hit
    pol = policy_yaml.parse(text, path)
    if len(_parsed) >= PARSED_MAX:
        _parsed.pop(next(iter(_parsed)))
    _parsed[(path, text)] = pol
    return pol


def load(path: str | None) -> Policy:
    """The policy at `path` (explicit: must exist), or at DEFAULT_PATH (optional)."""
    explicit = path is not None
    where = path or DEFAULT_PATH
    try:
        text = read_trusted(where)
    except FileNotFoundError:
        if explicit:
            raise BadPolicy(f"{where}: no such policy file") from None
        return Policy()
    except OSError as e:
        raise BadPolicy(f"{where}: {e.strerror}") from None
    return parse(text, where)
