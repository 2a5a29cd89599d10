"""/etc/request-key.d/cifs.spnego.conf: which program the kernel's cifs.spnego upcall runs.

request-key runs it as root with only HOME and PATH set, and has no quoting: everything the
helper needs (policy file, krb5.conf) goes on the command line.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from .model import Config
from .rendered import Kind, Rendered

REQUEST_KEY_FILE = PurePosixPath("/etc/request-key.d/cifs.spnego.conf")


def command(c: Config) -> list[str]:
    argv = [str(c.helper.path), "--policy", str(c.helper.policy)]
    if c.helper.krb5_conf:
        argv += ["-k", str(c.helper.krb5_conf)]
    return [*argv, *c.helper.args, "%k"]


def render(c: Config) -> list[Rendered]:
    body = (
        "# op  type         description  callout  program\n"
        f"create cifs.spnego * * {' '.join(command(c))}\n"
    )
    return [Rendered(REQUEST_KEY_FILE, body, Kind.REQUEST_KEY)]
