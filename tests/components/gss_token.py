"""Test scaffolding: make a cifs.spnego-style SPNEGO blob and session key with python-gssapi.

This plays the part of our helper until `upcall/` can do it: it runs *in the lab namespace, as
the lab user* (setpriv), with that user's ccache, and asks for `cifs@<host>` with the SPNEGO
mech and without GSS_C_MUTUAL_FLAG (with mutual auth the krb5 context stays incomplete and the
session key cannot be read; cifs.upcall passes no mutual flag either).

The child runs this very file with `python -c <source>`, so it needs no read access to the
repository (lab users cannot necessarily read it) and imports nothing from the test suite.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.components.samba import SambaLab

PYTHON = "/opt/cifs-upcall/bin/python"
SPNEGO_OID = "1.3.6.1.5.5.2"
# GSS_C_INQ_SSPI_SESSION_KEY: the krb5 session key (the initiator subkey), then its enctype OID.
SESSION_KEY_OID = "1.2.840.113554.1.2.2.5.5"


@dataclass(frozen=True)
class GssToken:
    """What cifs.upcall puts in `struct cifs_spnego_msg`: the blob and the session key."""

    blob: bytes
    session_key: bytes
    initiator: str
    complete: bool


class GssTokenError(RuntimeError):
    pass


def make_token(
    lab: SambaLab, user: str, ccache: str, *, host: str | None = None, timeout: float = 60
) -> GssToken:
    """A SPNEGO token for `cifs@<host>` (default: the DC) made as `user` with `ccache`."""
    source = Path(__file__).read_text()
    arg = json.dumps({"target": f"cifs@{host or lab.fqdn}"})
    res = lab.run(
        [PYTHON, "-c", source, arg],
        user=user,
        env=lab.env(KRB5CCNAME=ccache, PYTHONDONTWRITEBYTECODE="1"),
        check=False,
        timeout=timeout,
    )
    try:
        out = json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise GssTokenError(
            f"gss child failed ({res.returncode}): {res.stdout}{res.stderr}"
        ) from exc
    if not out.get("ok"):
        raise GssTokenError(f"gss child failed: {out.get('error')}")
    return GssToken(
        blob=bytes.fromhex(out["blob"]),
        session_key=bytes.fromhex(out["session_key"]),
        initiator=out["initiator"],
        complete=out["complete"],
    )


def _child(target: str) -> dict[str, object]:
    import importlib

    # Untyped use on purpose: python-gssapi's stubs do not re-export these names.
    gssapi: Any = importlib.import_module("gssapi")

    flags = gssapi.RequirementFlag.integrity | gssapi.RequirementFlag.out_of_sequence_detection
    ctx = gssapi.SecurityContext(
        name=gssapi.Name(target, gssapi.NameType.hostbased_service),
        mech=gssapi.OID.from_int_seq(SPNEGO_OID),
        flags=flags,
        usage="initiate",
    )
    blob = ctx.step()
    key = gssapi.raw.inquire_sec_context_by_oid(ctx, gssapi.OID.from_int_seq(SESSION_KEY_OID))[0]
    return {
        "ok": True,
        "blob": bytes(blob).hex(),
        "session_key": bytes(key).hex(),
        "initiator": str(ctx.initiator_name),
        "complete": bool(ctx.complete),
    }


if __name__ == "__main__":
    try:
        result = _child(json.loads(sys.argv[1])["target"])
    except Exception as exc:  # reported to the parent as JSON
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
