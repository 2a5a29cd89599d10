"""What answering one request comes to: run the pipeline, then present its outcome as a
wire.Reply (log lines, the payload, a dry run's output). Root, host namespaces: the daemon's
per-request handler, or the client itself when no daemon answers (in-process).

The keyring is not touched here: the client instantiates or negates, so a dry run runs
exactly this, daemon included.
"""

from __future__ import annotations

import argparse
import json
import syslog
from typing import TYPE_CHECKING

from . import log
from .errors import UpcallError
from .wire import Reply

if TYPE_CHECKING:
    from .pipeline import Options, Outcome, Workers
    from .sources.proxy_cache import CredCache


def options(a: argparse.Namespace) -> Options:
    """Handler: the pipeline's Options from the parsed command line."""
    from .pipeline import Options

    return Options(
        krb5_config=a.krb5conf,
        keytab=a.keytab,
        legacy_uid=a.legacy_uid,
        trust_dns=a.trust_dns,
        env_probe=not a.no_env_probe,
        deadline=a.deadline,
        policy_path=a.policy,
        host_krb5_config=a.host_krb5_config,
    )


def reply_for(a: argparse.Namespace) -> Reply:
    """An empty Reply carrying what the command line says about logging and negation."""
    r = Reply()
    r.negate_timeout = a.negate_timeout
    r.log_file = a.log_file
    r.debug = a.debug
    return r


def summary(out: Outcome, serial: int | None, via: str) -> str:
    """The one line per upcall: outcome, source, principal, ... reason and hint on failure."""
    req = out.request
    common = dict(
        key=serial,
        host=req.host,
        sec=req.sec.value,
        uid=out.uid,
        pid=req.pid,
        target=req.upcall_target.value,
    )
    if out.ok and out.token:
        return log.kv(
            outcome="ok",
            source=out.source,
            principal=out.principal,
            spn=out.spn,
            impersonated="yes" if out.token.impersonated else "no",
            **common,
            ms=round(out.seconds * 1000),
            via=via,
        )
    assert out.reason is not None
    return log.kv(
        outcome="failed",
        reason=out.reason.value,
        **common,
        ms=round(out.seconds * 1000),
        via=via,
        error=out.message,
        hint=out.hint,
    )


Line = tuple[int, str, bytes]  # priority, text, journald entry


def _journal_entry(out: Outcome, serial: int | None, prio: int, line: str) -> bytes:
    """The CIFS_UPCALL_* fields of one upcall's journald entry."""
    from . import journal

    req = out.request
    return journal.entry(
        prio, line,
        outcome="ok" if out.ok else "failed",
        reason=out.reason.value if out.reason else None,
        key=serial, source=out.source, principal=out.principal, spn=out.spn,
        server=req.host, uid=out.uid, caller_pid=req.pid, target=req.upcall_target.value,
        impersonated=bool(out.token and out.token.impersonated) if out.ok else None,
        ms=round(out.seconds * 1000),
        error=out.message if not out.ok else None,
        hint=out.hint if not out.ok else None,
    )  # fmt: skip


def _outcome_lines(out: Outcome, serial: int | None, via: str, debug: bool) -> list[Line]:
    """The trail as debug lines (only with --debug: without, every log.emit drops them, and
    making them is ~0.2 ms of a handler's reply), then the one summary line."""
    lines: list[Line] = []
    if debug:
        lines = [(syslog.LOG_DEBUG, log.kv(**a.as_dict()), b"") for a in out.trail]
    prio = syslog.LOG_INFO if out.ok else syslog.LOG_ERR
    text = summary(out, serial, via)
    lines.append((prio, text, _journal_entry(out, serial, prio, text)))
    return lines


def refusal(serial: int | None, reason: str, error: str, hint: str, **more: object) -> Line:
    """One line (and journald entry) for a request refused before the pipeline."""
    from . import journal

    line = log.kv(outcome="refused", key=serial, reason=reason, **more, error=error, hint=hint)
    entry = journal.entry(syslog.LOG_ERR, line, outcome="refused", reason=reason, key=serial,
                          error=error, hint=hint)  # fmt: skip
    return syslog.LOG_ERR, line, entry


def refused(e: UpcallError, serial: int | None, via: str) -> Line:
    """The key, its origin or its description refused."""
    return refusal(serial, e.reason.value, e.message, e.hint, via=via)


def key_reply(
    serial: int, described: str, a: argparse.Namespace, pidfd: int | None, via: str,
    cache: CredCache | None = None, workers: Workers | None = None,
) -> tuple[Reply, Outcome | None]:  # fmt: skip
    """A kernel key: `described` is keyctl_describe's `type;uid;gid;perm;description`."""
    from .kernel.origin import check_origin, parse_describe
    from .kernel.request import parse_description
    from .pipeline import run_upcall

    r = reply_for(a)
    try:
        info = parse_describe(described)
        check_origin(info)
        req = parse_description(info.description)
    except UpcallError as e:
        r.lines.append(refused(e, serial, via))
        return r, None
    out = run_upcall(req, options(a), pidfd=pidfd, cache=cache, workers=workers)
    r.lines.extend(_outcome_lines(out, serial, via, a.debug))
    if out.ok:
        r.payload, r.exit = out.payload, 0
    return r, out


def _doc(out: Outcome, via: str) -> dict[str, object]:
    return {
        "via": via,
        "outcome": "ok" if out.ok else "failed",
        "reason": out.reason.value if out.reason else None,
        "message": out.message,
        "hint": out.hint,
        "source": out.source or None,
        "principal": out.principal or None,
        "spn": out.spn or None,
        "impersonated": bool(out.token and out.token.impersonated),
        "uid": out.uid,
        "enctype": out.token.enctype if out.token else None,
        "session_key_len": len(out.token.session_key) if out.token else None,
        "payload_len": len(out.payload) if out.payload else None,
        "seconds": round(out.seconds, 4),
        "trail": [a.as_dict() for a in out.trail],
    }


def dry_reply(
    text: str, a: argparse.Namespace, pidfd: int | None, via: str,
    cache: CredCache | None = None, workers: Workers | None = None,
) -> tuple[Reply, Outcome | None]:  # fmt: skip
    """--dry-run DESCRIPTION (or a whole describe string): everything but the keyring."""
    from .kernel.origin import check_origin, parse_describe
    from .kernel.request import parse_description
    from .pipeline import run_upcall

    r = reply_for(a)
    r.echo = a.debug
    r.payload_out = a.payload_out
    try:
        if text.startswith("cifs.spnego;") or (
            text.count(";") >= 4 and not text.startswith("ver=")
        ):
            info = parse_describe(text)
            check_origin(info)
            text = info.description
        req = parse_description(text)
    except UpcallError as e:
        doc: dict[str, object] = {
            "outcome": "failed", "reason": e.reason.value, "message": e.message,
            "hint": e.hint, "source": None, "principal": None, "spn": None, "trail": [],
        }  # fmt: skip
        r.stdout = (
            json.dumps(doc) if a.json else f"refused: {e.reason.value}: {e.message} ({e.hint})"
        ) + "\n"
        return r, None
    out = run_upcall(req, options(a), pidfd=pidfd, cache=cache, workers=workers)
    r.lines.extend(_outcome_lines(out, None, via, a.debug))
    r.payload = out.payload
    if a.json:
        r.stdout = json.dumps(_doc(out, via)) + "\n"
    else:
        rows = [f"  {a.source:<10} {a.outcome:<7} {a.detail}" for a in out.trail]
        r.stdout = "\n".join([*rows, summary(out, None, via)]) + "\n"
    r.exit = 0 if out.ok else 1
    return r, out


def bad_arguments(serial: int | None, why: str, argv: list[str]) -> Reply:
    """An unknown flag in the request-key line: one log line and a short negative key, not
    argparse's exit 2 on a stderr that request-key throws away. --negate-timeout and
    --log-file still count as far as they parse on their own."""
    from .cli import startup_options
    from .errors import Reason

    r = Reply()
    r.negate_timeout, r.log_file = startup_options(argv)
    hint = "fix the flags in the request-key line (cifs-upcall --help; cifs-upcall doctor)"
    r.lines.append(refusal(serial, Reason.BAD_ARGUMENTS.value, f"bad arguments: {why}", hint,
                            negate_timeout=r.negate_timeout))  # fmt: skip
    r.exit = 2
    return r
