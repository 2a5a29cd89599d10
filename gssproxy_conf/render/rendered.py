"""What every renderer returns: a target path (absolute, as installed) and the body text.
The plan adds the ownership marker; renderers stay pure."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import PurePosixPath


class Kind(enum.Enum):
    GSSPROXY = "gssproxy service"
    KRB5 = "krb5.conf snippet"
    REQUEST_KEY = "request-key rule"
    POLICY = "helper policy"
    AUTOFS_MAP = "autofs map"
    AUTOFS_MASTER = "autofs master entry"
    TMPFILES = "tmpfiles.d rule"
    SYSTEMD = "systemd drop-in"


@dataclass(frozen=True)
class Rendered:
    path: PurePosixPath
    body: str
    kind: Kind
    mode: int = 0o644
