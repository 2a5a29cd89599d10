"""/etc/request-key.d/cifs-upcall.conf: which program the kernel's cifs.spnego upcall runs.

request-key (keyutils >= 1.6) reads every request-key.d file and takes the best match, the
line with the fewest wildcards; every kernel description starts ``ver=0x2;``, so our line
beats cifs-utils' ``create cifs.spnego * * /usr/sbin/cifs.upcall %k`` whatever the file order,
and cifs-utils' file can stay where its package put it.

request-key runs the helper as root with only HOME and PATH set, and has no quoting:
everything the helper needs (policy file, krb5.conf) goes on the command line.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from upcall import paths

from ..model import Config
from .rendered import Kind, Rendered

REQUEST_KEY_FILE = PurePosixPath(paths.REQUEST_KEY_FILE)
# where gssproxy-conf wrote the rule before; a marked file there is ours and is removed
LEGACY_REQUEST_KEY_FILE = PurePosixPath(paths.CIFS_UTILS_REQUEST_KEY_FILE)


def arguments(c: Config) -> list[str]:
    """The helper's arguments, without the program and without %k."""
    argv = ["--policy", str(c.helper.policy)]
    if c.helper.krb5_conf:
        argv += ["-k", str(c.helper.krb5_conf)]
    return [*argv, *c.helper.args]


def command(c: Config) -> list[str]:
    return [str(c.helper.path), *arguments(c), "%k"]


def render(c: Config) -> list[Rendered]:
    line = paths.request_key_line(str(c.helper.path), tuple(arguments(c)))
    body = f"# op  type         description  callout  program\n{line}\n"
    return [Rendered(REQUEST_KEY_FILE, body, Kind.REQUEST_KEY)]
