"""The test suite's stand-in for cifs.ko: an SMB2/3 client that authenticates with a pre-made
SPNEGO blob and session key, exactly what our helper hands the kernel in `struct cifs_spnego_msg`.

It uses smbprotocol's own Connection / Session / TreeConnect / Open classes. Only the
authentication step is replaced: instead of asking pyspnego for a token, the session sends our
blob in one SESSION_SETUP round trip and ignores the server's response token, as the kernel
does (cifs-upcall.md §1.7). The session key we were given is then used as-is:

* SMB 2.x signing: HMAC-SHA256 keyed with the first 16 bytes;
* SMB 3.x signing/encryption: SP800-108 KDF keyed with the first 16 bytes;
* SMB 3.1.1 with AES-256-CCM/GCM: the cipher keys come from the FULL session key
  (MS-SMB2 3.2.5.3.1). smbprotocol 1.17 already does this (`Session.full_session_key`), so the
  adapter only has to hand over all the bytes; `SmbResult.encryption_key_bits` shows the result.

Where a wrong session key shows up: smbprotocol verifies the signature of the final
SESSION_SETUP response, so here it fails at stage "session_setup" ("signature could not be
verified"); cifs.ko skips that check and fails at the TREE_CONNECT. With `encrypt=True`
smbprotocol skips the check too, and the server, unable to decrypt our TREE_CONNECT, drops the
connection (stage "tree_connect", "socket was closed").

The DC lives in the lab's network namespace (`lab.ns`), which the host cannot reach, so
`smb_session()` runs this module as a child
(`ip netns exec … python -m tests.components.smb_client`) with a JSON request on stdin and a
JSON result on stdout. `run_client()` is the part that runs in there.
"""

from __future__ import annotations

import json
import re
import struct
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.components.samba import SambaLab

PYTHON = "/opt/cifs-upcall/bin/python"
REPO_ROOT = Path(__file__).resolve().parents[2]

DIALECTS: dict[str, int] = {
    "2.0.2": 0x0202,
    "2.1": 0x0210,
    "3.0": 0x0300,
    "3.0.2": 0x0302,
    "3.1.1": 0x0311,
}
CIPHERS: dict[str, int] = {
    "AES-128-CCM": 0x0001,
    "AES-128-GCM": 0x0002,
    "AES-256-CCM": 0x0003,
    "AES-256-GCM": 0x0004,
}
SIGNING: dict[str, int] = {"HMAC-SHA256": 0x0000, "AES-CMAC": 0x0001, "AES-GMAC": 0x0002}

SMB2_SESSION_SETUP = 0x0001
SMB2_TREE_CONNECT = 0x0003
SMB2_FLAGS_SIGNED = 0x00000008


class SmbClientError(RuntimeError):
    """The SMB exchange failed. `stage` is where (negotiate, session_setup, tree_connect, read,
    write, logoff, child); `status` is the NTSTATUS name when the server returned one."""

    def __init__(self, stage: str, message: str, status: str | None = None) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.message = message
        self.status = status


@dataclass(frozen=True)
class SmbRequest:
    blob: bytes
    session_key: bytes
    server: str = "dc1.lab.test"
    dialect: str = "3.1.1"
    share: str = "share"
    path: str = "hello.txt"
    # Only offered for 3.1.1; None: smbprotocol's default list (AES-128 first, like the kernel).
    ciphers: tuple[str, ...] | None = None
    # The kernel offers no signing-capabilities context by default, so it signs with AES-CMAC
    # on 3.x; offering only that keeps us kernel-like.
    signing: tuple[str, ...] = ("AES-CMAC", "HMAC-SHA256")
    # Like `mount -o seal`: every request after SESSION_SETUP is encrypted (needs 3.x).
    encrypt: bool = False
    write_path: str | None = None
    write_data: bytes = b"written by smb_client\n"
    timeout: float = 30

    def to_json(self) -> str:
        d = asdict(self)
        d["blob"] = self.blob.hex()
        d["session_key"] = self.session_key.hex()
        d["write_data"] = self.write_data.hex()
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> SmbRequest:
        d = json.loads(text)
        for k in ("blob", "session_key", "write_data"):
            d[k] = bytes.fromhex(d[k])
        if d.get("ciphers") is not None:
            d["ciphers"] = tuple(d["ciphers"])
        d["signing"] = tuple(d["signing"])
        return cls(**d)


@dataclass(frozen=True)
class SmbResult:
    dialect: str
    session_id: int
    # Every request after SESSION_SETUP was encrypted (server's ENCRYPT_DATA flag or `encrypt`).
    session_encrypted: bool
    tree_connect_status: str
    # The TREE_CONNECT response carried SMB2_FLAGS_SIGNED and its signature verified with our key.
    tree_connect_signed: bool
    # The TREE_CONNECT response came in an SMB2 TRANSFORM header and decrypted with our key.
    tree_connect_encrypted: bool
    content: bytes
    cipher: str | None
    encryption_key_bits: int | None
    signing_algorithm: str
    session_key_len: int
    client_port: int
    written: str | None = None
    # Filled in by smb_session() on the host side from server evidence:
    server_user: str | None = None  # smbd's `Successful AuthZ` line for this TCP connection
    written_owner: str | None = None  # owner of the written file, as the DC maps it (server_owner)
    verified_commands: list[int] = field(default_factory=list)
    decrypted_commands: list[int] = field(default_factory=list)

    def to_json(self) -> str:
        d = asdict(self)
        d["content"] = self.content.hex()
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> SmbResult:
        d = json.loads(text)
        d["content"] = bytes.fromhex(d["content"])
        return cls(**d)


# --- host side ---------------------------------------------------------------------------------


def smb_session(
    lab: SambaLab,
    blob: bytes,
    session_key: bytes,
    *,
    dialect: str = "3.1.1",
    share: str = "share",
    path: str = "hello.txt",
    ciphers: Sequence[str] | None = None,
    encrypt: bool = False,
    write_path: str | None = None,
    write_data: bytes = b"written by smb_client\n",
    timeout: float = 30,
) -> SmbResult:
    """NEGOTIATE, SESSION_SETUP(blob), signed TREE_CONNECT, CREATE+READ `path` [, CREATE+WRITE
    `write_path`] against the lab DC, run inside the lab namespace. Raises SmbClientError."""
    req = SmbRequest(
        blob=blob,
        session_key=session_key,
        server=lab.fqdn,
        dialect=dialect,
        share=share,
        path=path,
        ciphers=tuple(ciphers) if ciphers is not None else None,
        encrypt=encrypt,
        write_path=write_path,
        write_data=write_data,
        timeout=timeout,
    )
    res = lab.run(
        [PYTHON, "-m", "tests.components.smb_client"],
        env=lab.env(PYTHONPATH=str(REPO_ROOT), PYTHONDONTWRITEBYTECODE="1"),
        input=req.to_json(),
        check=False,
        timeout=timeout + 30,
    )
    lines = res.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, ValueError) as exc:
        raise SmbClientError(
            "child", f"no JSON from the client ({res.returncode}): {res.stdout}{res.stderr}"
        ) from exc
    if "error" in out:
        e = out["error"]
        raise SmbClientError(e["stage"], e["message"], e.get("status"))
    result = SmbResult.from_json(json.dumps(out["result"]))
    user = authz_user(lab, result.client_port)
    owner = server_owner(lab, lab.share / write_path) if write_path else None
    return replace(result, server_user=user, written_owner=owner)


_AUTHZ = re.compile(
    r"Successful AuthZ: \[SMB2,krb5\] user \[(?P<dom>[^\]]*)\]\\\[(?P<user>[^\]]*)\].*?"
    r"Remote host \[ipv4:[0-9.]+:(?P<port>\d+)\]"
)


def authz_user(lab: SambaLab, client_port: int) -> str | None:
    """The user smbd authorised (auth_audit:4) for the connection from `client_port`."""
    for m in _AUTHZ.finditer(lab.smb_log_text()):
        if int(m["port"]) == client_port:
            return m["user"]
    return None


def server_owner(lab: SambaLab, path: Path | str) -> str:
    """The AD account name (e.g. "alice") that owns `path` on the DC's disk.

    smbd creates files with the uid winbind (idmap.ldb) gives the user's SID; we map that uid
    back with `wbinfo --uid-to-sid` and `--sid-to-name`. wbinfo must talk to the lab's winbindd,
    whose socket smbd finds at the compiled-in /run/samba/winbindd: so, as the DC does, give
    the command a private /run with the lab's run dir bound onto /run/samba (`ip netns exec`
    already gives each command its own mount namespace; nothing reaches the host's /run).
    """
    uid = Path(path).stat().st_uid
    run = lab.dc_dir / "run"
    script = (
        "mount -t tmpfs -o mode=755 labrun /run && mkdir -p /run/samba && "
        f"mount --bind {run} /run/samba && sid=$(wbinfo --uid-to-sid={uid}) && "
        'wbinfo --sid-to-name="$sid"'
    )
    res = lab.run(["sh", "-c", script], check=False)
    if res.returncode != 0:
        raise RuntimeError(f"cannot map uid {uid} of {path}: {res.stdout}{res.stderr}")
    # "LAB\alice 1" (name, then the SID type)
    name = res.stdout.strip().rsplit(" ", 1)[0]
    return name.split("\\", 1)[-1]


# --- in the namespace: the smbprotocol part ----------------------------------------------------


class _PremadeToken:
    """Stands in for the pyspnego context that Session.connect() would create.

    Session.connect() loops `while not context.complete: out = context.step(in)`, sends `out` in
    a SESSION_SETUP and feeds the server's answer back. We return our blob once and then report
    complete, so there is exactly one round trip and the server's token is never looked at (the
    kernel never passes it back to userspace either). `session_key` is all of our key: smbprotocol
    uses its first 16 bytes for signing and the whole key for AES-256 cipher keys.
    """

    def __init__(self, blob: bytes, session_key: bytes) -> None:
        self._blob = blob
        self.session_key = session_key
        self.complete = False

    def step(self, in_token: bytes | None = None) -> bytes:
        self.complete = True
        return self._blob


@contextmanager
def _premade_auth(blob: bytes, session_key: bytes) -> Iterator[None]:
    """While active, smbprotocol.session's `spnego.client(...)` returns a _PremadeToken.

    Why monkeypatch: Session.connect() builds the token, sends it and derives all keys in one
    method; replacing it would mean re-implementing the key schedule we want to test against.
    Only the name `spnego` inside smbprotocol.session is swapped (not the spnego package), and
    only for the duration of the block.
    """
    import smbprotocol.session as smb_session_mod
    import spnego  # type: ignore[import-untyped, unused-ignore]

    def client(*_a: object, **_kw: object) -> _PremadeToken:
        return _PremadeToken(blob, session_key)

    shim = SimpleNamespace(
        client=client, exceptions=spnego.exceptions, NegotiateOptions=spnego.NegotiateOptions
    )
    saved = smb_session_mod.spnego
    smb_session_mod.spnego = shim
    try:
        yield
    finally:
        smb_session_mod.spnego = saved


def _kernel_like_connection_class() -> type[Any]:
    from smbprotocol.connection import Connection
    from smbprotocol.exceptions import MoreProcessingRequired

    class KernelLikeConnection(Connection):  # type: ignore[misc]
        """smbprotocol's Connection, plus evidence and the kernel's one-round-trip rule.

        * verify_signature() is only *called* for every response; it silently accepts unsigned
          ones. We record which responses really carried a signature that verified, so the
          result can say "the TREE_CONNECT was signed with our key" rather than assume it.
        * _decrypt() records which responses arrived encrypted (and decrypted with our keys).
        * STATUS_MORE_PROCESSING_REQUIRED on SESSION_SETUP is an error for cifs.ko with
          Kerberos: it never sends a second leg.
        """

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.verified_commands: list[int] = []
            self.decrypted_commands: list[int] = []

        def verify_signature(self, header: Any, session_id: int, force: bool = False) -> None:
            super().verify_signature(header, session_id, force=force)
            if header["flags"].has_flag(SMB2_FLAGS_SIGNED):
                cmd = header["command"].get_value()
                if force or cmd != SMB2_SESSION_SETUP:
                    self.verified_commands.append(int(cmd))

        def _decrypt(self, message: Any) -> bytes:
            plain: bytes = super()._decrypt(message)
            self.decrypted_commands.append(struct.unpack_from("<H", plain, 12)[0])
            return plain

        def receive(self, request: Any, *a: Any, **kw: Any) -> Any:
            try:
                return super().receive(request, *a, **kw)
            except MoreProcessingRequired as exc:
                if request.message["command"].get_value() == SMB2_SESSION_SETUP:
                    raise SmbClientError(
                        "session_setup",
                        "server wants another SESSION_SETUP leg; the kernel does one round trip",
                        "STATUS_MORE_PROCESSING_REQUIRED",
                    ) from exc
                raise

    return KernelLikeConnection


def _status_name(exc: BaseException) -> str | None:
    from smbprotocol.exceptions import SMBResponseException
    from smbprotocol.header import NtStatus

    if isinstance(exc, SMBResponseException):
        code = exc.status
        for name, value in vars(NtStatus).items():
            if name.startswith("STATUS_") and value == code:
                return str(name)
        return f"0x{code:08x}"
    return None


@contextmanager
def _stage(name: str) -> Iterator[None]:
    try:
        yield
    except SmbClientError:
        raise
    except Exception as exc:
        raise SmbClientError(name, f"{type(exc).__name__}: {exc}", _status_name(exc)) from exc


def run_client(req: SmbRequest) -> SmbResult:
    """The whole exchange; must run where `req.server` is reachable (the lab namespace)."""
    from smbprotocol.open import (
        CreateDisposition,
        CreateOptions,
        FileAttributes,
        FilePipePrinterAccessMask,
        ImpersonationLevel,
        Open,
        ShareAccess,
    )
    from smbprotocol.session import Session
    from smbprotocol.tree import TreeConnect

    if req.dialect not in DIALECTS:
        raise SmbClientError(
            "negotiate", f"unknown dialect {req.dialect!r}; known: {list(DIALECTS)}"
        )
    conn = _kernel_like_connection_class()(uuid.uuid4(), req.server, 445, require_signing=True)
    ciphers = [CIPHERS[c] for c in req.ciphers] if req.ciphers else None
    with _stage("negotiate"):
        conn.connect(
            dialect=DIALECTS[req.dialect],
            timeout=req.timeout,
            preferred_encryption_algos=ciphers,
            preferred_signing_algos=[SIGNING[s] for s in req.signing],
        )
    try:
        client_port = conn.transport._sock.getsockname()[1]  # for the server log's "Remote host"
        # require_encryption must be False below 3.0 (smbprotocol refuses it otherwise).
        session = Session(conn, require_encryption=req.encrypt)
        with _stage("session_setup"), _premade_auth(req.blob, req.session_key):
            session.connect()
        tree = TreeConnect(session, rf"\\{req.server}\{req.share}")
        with _stage("tree_connect"):
            before = len(conn.verified_commands), len(conn.decrypted_commands)
            tree.connect()
            tc_signed = SMB2_TREE_CONNECT in conn.verified_commands[before[0] :]
            tc_encrypted = SMB2_TREE_CONNECT in conn.decrypted_commands[before[1] :]
        with _stage("read"):
            f = Open(tree, req.path)
            f.create(
                ImpersonationLevel.Impersonation,
                FilePipePrinterAccessMask.GENERIC_READ,
                FileAttributes.FILE_ATTRIBUTE_NORMAL,
                ShareAccess.FILE_SHARE_READ,
                CreateDisposition.FILE_OPEN,
                CreateOptions.FILE_NON_DIRECTORY_FILE,
            )
            content = f.read(0, f.end_of_file) if f.end_of_file else b""
            f.close()
        if req.write_path:
            with _stage("write"):
                w = Open(tree, req.write_path)
                w.create(
                    ImpersonationLevel.Impersonation,
                    FilePipePrinterAccessMask.GENERIC_WRITE
                    | FilePipePrinterAccessMask.GENERIC_READ,
                    FileAttributes.FILE_ATTRIBUTE_NORMAL,
                    ShareAccess.FILE_SHARE_READ,
                    CreateDisposition.FILE_CREATE,
                    CreateOptions.FILE_NON_DIRECTORY_FILE,
                )
                w.write(req.write_data, 0)
                w.close()
        encrypted = bool(session.encrypt_data or tree.encrypt_data)
        cipher = None
        if encrypted and conn.dialect >= DIALECTS["3.1.1"]:
            cipher = next((k for k, v in CIPHERS.items() if v == conn.cipher_id), None)
        elif encrypted:
            cipher = "AES-128-CCM"  # the only cipher of 3.0 / 3.0.2
        signing = "HMAC-SHA256"
        if conn.dialect >= DIALECTS["3.1.1"] and conn.signing_algorithm_id is not None:
            signing = next(k for k, v in SIGNING.items() if v == conn.signing_algorithm_id)
        elif conn.dialect >= DIALECTS["3.0"]:
            signing = "AES-CMAC"
        result = SmbResult(
            dialect=next(k for k, v in DIALECTS.items() if v == conn.dialect),
            session_id=int(session.session_id),
            session_encrypted=bool(session.encrypt_data),
            tree_connect_status="STATUS_SUCCESS",
            tree_connect_signed=tc_signed,
            tree_connect_encrypted=tc_encrypted,
            content=content,
            cipher=cipher,
            encryption_key_bits=len(session.encryption_key) * 8 if encrypted else None,
            signing_algorithm=signing,
            session_key_len=len(req.session_key),
            client_port=int(client_port),
            written=req.write_path,
            verified_commands=list(conn.verified_commands),
            decrypted_commands=list(conn.decrypted_commands),
        )
        with _stage("logoff"):
            session.disconnect()
        return result
    finally:
        # The connection may already be dead; the real error, if any, is already on its way.
        with suppress(Exception):
            conn.disconnect(close=False)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: a SmbRequest as JSON on stdin; one JSON line on stdout: {"result": …} or
    {"error": {"stage", "message", "status"}} (exit status 2)."""
    del argv
    try:
        result = run_client(SmbRequest.from_json(sys.stdin.read()))
    except SmbClientError as exc:
        print(
            json.dumps(
                {"error": {"stage": exc.stage, "message": exc.message, "status": exc.status}}
            )
        )
        return 2
    print(json.dumps({"result": json.loads(result.to_json())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
