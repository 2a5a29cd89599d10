"""Model -> the complete set of files to install (stamped with the ownership marker), plus
the follow-up steps a person must take. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from ..errors import Code, ConfigError, Problem
from ..model import Config
from ..render import autofs as render_autofs
from ..render import gssproxy as render_gssproxy
from ..render import krb5 as render_krb5
from ..render import policy as render_policy
from ..render import requestkey as render_requestkey
from ..render import systemd as render_systemd
from ..render import tmpfiles as render_tmpfiles
from ..render.rendered import Kind, Rendered
from .marker import stamp

# Fixed paths we may have written earlier: a marked file here that the plan no longer
# contains is removed by ``apply`` (a stale gssproxy service would otherwise stay active).
MANAGED_PATHS = (
    render_gssproxy.SMB_FILE,
    render_gssproxy.NFS_FILE,
    render_gssproxy.LEGACY_NFS_FILE,
    render_gssproxy.PROTECTED_FILE,
    render_krb5.KRB5_FILE,
    render_requestkey.REQUEST_KEY_FILE,
    render_requestkey.LEGACY_REQUEST_KEY_FILE,
    render_tmpfiles.TMPFILES_FILE,
    render_autofs.AUTO_MASTER_FILE,
    render_systemd.DROPIN_FILE,
)


@dataclass(frozen=True)
class PlannedFile:
    path: PurePosixPath  # where it is installed, absolute
    content: str  # with the marker line
    kind: Kind
    mode: int = 0o644


@dataclass(frozen=True)
class Plan:
    files: tuple[PlannedFile, ...]
    notes: tuple[str, ...]

    def get(self, path: PurePosixPath | str) -> PlannedFile | None:
        return next((f for f in self.files if f.path == PurePosixPath(path)), None)


@dataclass(frozen=True)
class HostFacts:
    """What the target system decides about the rendering (read by the CLI, not here)."""

    # /etc/krb5.conf reads /etc/krb5.conf.d/ (Debian 12's default file does not)
    krb5_includedir: bool = False


def rendered(c: Config, host: HostFacts | None = None) -> list[Rendered]:
    host = host or HostFacts()
    krb5 = render_krb5.render(c)
    return [
        *render_gssproxy.render(c),
        *krb5,
        *render_requestkey.render(c),
        *render_policy.render(c),
        *render_autofs.render(c),
        *render_tmpfiles.render(c),
        *render_systemd.render(c, host.krb5_includedir, bool(krb5)),
    ]


def _notes(c: Config, files: list[Rendered]) -> list[str]:
    kinds = {f.kind for f in files}
    notes = []
    if Kind.TMPFILES in kinds:
        notes.append(
            f"create the socket directories now: systemd-tmpfiles --create "
            f"{render_tmpfiles.TMPFILES_FILE}"
        )
    if Kind.SYSTEMD in kinds:
        notes.append("systemctl daemon-reload (the gssproxy.service drop-in changed)")
    notes.append(
        "reload gssproxy: systemctl reload gssproxy (a reload that cannot bind a new "
        "socket stops the daemon; check its log)"
    )
    if Kind.KRB5 in kinds:
        notes.append("make sure /etc/krb5.conf has 'includedir /etc/krb5.conf.d/'")
    if Kind.AUTOFS_MASTER in kinds:
        notes.append("make sure /etc/auto.master has '+dir:/etc/auto.master.d', then reload autofs")
    notes.append(
        f"the first entry of {c.client.keytab} must be {c.client_principal}: "
        "gssproxy 0.9 impersonates with the first key it finds"
    )
    notes.append("apply the directory side: gssproxy-conf ad FILE")
    return notes


def build(c: Config, host: HostFacts | None = None) -> Plan:
    files = rendered(c, host)
    seen: dict[PurePosixPath, Kind] = {}
    problems = []
    for f in files:
        if f.path in seen:
            problems.append(
                Problem(
                    Code.CONFLICT,
                    f"{f.path} would hold both the {seen[f.path].value} and the {f.kind.value}",
                )
            )
        seen[f.path] = f.kind
    if problems:
        raise ConfigError(problems)
    planned = tuple(PlannedFile(f.path, stamp(f.body), f.kind, f.mode) for f in files)
    return Plan(planned, tuple(_notes(c, files)))
