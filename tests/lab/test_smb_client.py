"""The kernel stand-in (tests/components/smb_client.py) against the real Samba DC of the lab.

Tokens come from python-gssapi run as the lab user (tests/components/gss_token.py), i.e. the same
blob + session key pair that our helper will put in `struct cifs_spnego_msg`.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.components.gss_token import GssToken, make_token
from tests.components.samba import SambaLab
from tests.components.smb_client import (
    SmbClientError,
    SmbRequest,
    SmbResult,
    _PremadeToken,
    server_owner,
    smb_session,
)

pytestmark = pytest.mark.lab

SMB2_READ = 0x0008
HELLO = b"hello from lab share\n"

TokenFactory = Callable[[str], GssToken]


@pytest.fixture(scope="module")
def token_for(samba_lab: SambaLab) -> TokenFactory:
    """A fresh SPNEGO blob + session key for a lab user (kinit once per user per module)."""
    # base/tmp is 1777: the user must be able to write its own ccache there.
    d = samba_lab.base / "tmp" / f"smbc-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    d.chmod(0o1777)
    done: set[str] = set()

    def make(name: str) -> GssToken:
        cc = f"FILE:{d}/cc.{name}"
        if name not in done:
            samba_lab.kinit(samba_lab.users[name], cc)
            done.add(name)
        return make_token(samba_lab, name, cc)

    return make


@pytest.fixture
def alice(token_for: TokenFactory) -> GssToken:
    return token_for("alice")


def _flip(b: bytes) -> bytes:
    return bytes(x ^ 0xFF for x in b)


# --- no lab needed --------------------------------------------------------------------------


def test_request_json_round_trip() -> None:
    req = SmbRequest(blob=b"\x60\x01", session_key=bytes(range(32)), ciphers=("AES-256-GCM",))
    assert SmbRequest.from_json(req.to_json()) == req


def test_premade_token_is_one_round_trip() -> None:
    ctx = _PremadeToken(b"blob", b"k" * 32)
    assert not ctx.complete
    assert ctx.step(b"server's NegTokenInit, ignored") == b"blob"
    assert ctx.complete and ctx.session_key == b"k" * 32


# --- against the DC -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "signing"),
    [
        ("2.0.2", "HMAC-SHA256"),
        ("2.1", "HMAC-SHA256"),
        ("3.0", "AES-CMAC"),
        ("3.0.2", "AES-CMAC"),
        ("3.1.1", "AES-CMAC"),
    ],
)
def test_dialect_signed_tree_connect_and_read(
    samba_lab: SambaLab, alice: GssToken, dialect: str, signing: str
) -> None:
    r = smb_session(samba_lab, alice.blob, alice.session_key, dialect=dialect)
    assert r.dialect == dialect
    assert r.session_id != 0
    assert r.tree_connect_status == "STATUS_SUCCESS"
    assert r.tree_connect_signed, r.verified_commands
    assert r.signing_algorithm == signing
    assert r.content == HELLO
    assert r.cipher is None and not r.session_encrypted
    assert r.server_user == "alice"


@pytest.mark.parametrize("cipher", ["AES-256-GCM", "AES-256-CCM"])
def test_311_aes256_sealed_read_on_secure(
    samba_lab: SambaLab, alice: GssToken, cipher: str
) -> None:
    r = smb_session(
        samba_lab, alice.blob, alice.session_key, share="secure", ciphers=[cipher], encrypt=True
    )
    assert r.dialect == "3.1.1"
    assert r.cipher == cipher
    assert r.encryption_key_bits == 256
    assert r.session_encrypted and r.tree_connect_encrypted
    assert SMB2_READ in r.decrypted_commands
    assert r.content == HELLO
    assert r.server_user == "alice"


@pytest.mark.parametrize("cipher", ["AES-256-GCM", "AES-256-CCM"])
def test_311_aes256_share_encryption_on_secure(
    samba_lab: SambaLab, alice: GssToken, cipher: str
) -> None:
    """No `seal`: the TREE_CONNECT is signed, the share's ENCRYPT_DATA flag encrypts the rest."""
    r = smb_session(samba_lab, alice.blob, alice.session_key, share="secure", ciphers=[cipher])
    assert r.tree_connect_signed and not r.tree_connect_encrypted
    assert r.cipher == cipher and r.encryption_key_bits == 256
    assert SMB2_READ in r.decrypted_commands
    assert r.content == HELLO


@pytest.mark.parametrize("cipher", ["AES-256-GCM", "AES-256-CCM"])
def test_aes256_needs_the_full_session_key(
    samba_lab: SambaLab, alice: GssToken, cipher: str
) -> None:
    """Right first 16 bytes, wrong tail: signing still verifies, AES-256 must not work.

    This is what a helper that truncates the key to 16 bytes would break (MS-SMB2 3.2.5.3.1).
    """
    key = alice.session_key
    assert len(key) == 32
    bad_tail = key[:16] + _flip(key[16:])
    with pytest.raises(SmbClientError) as ei:
        smb_session(samba_lab, alice.blob, bad_tail, share="secure", ciphers=[cipher])
    # Session setup and the signed TREE_CONNECT succeed; the server then cannot decrypt our
    # first encrypted request and drops the connection.
    assert ei.value.stage == "read", ei.value
    assert "closed" in ei.value.message
    # ... while AES-128 only uses the first 16 bytes, like signing.
    r = smb_session(samba_lab, alice.blob, bad_tail, share="secure", ciphers=["AES-128-GCM"])
    assert r.encryption_key_bits == 128 and r.content == HELLO
    # ... and a 16-byte key (the truncating helper) fails the same way with AES-256.
    with pytest.raises(SmbClientError):
        smb_session(samba_lab, alice.blob, key[:16], share="secure", ciphers=[cipher])


def test_secure_share_refuses_smb2(samba_lab: SambaLab, alice: GssToken) -> None:
    with pytest.raises(SmbClientError) as ei:
        smb_session(samba_lab, alice.blob, alice.session_key, dialect="2.1", share="secure")
    assert ei.value.stage == "tree_connect"
    assert ei.value.status == "STATUS_ACCESS_DENIED"


@pytest.mark.parametrize("dialect", ["2.0.2", "3.0", "3.1.1"])
def test_wrong_session_key_fails_signature(
    samba_lab: SambaLab, alice: GssToken, dialect: str
) -> None:
    with pytest.raises(SmbClientError) as ei:
        smb_session(samba_lab, alice.blob, _flip(alice.session_key), dialect=dialect)
    assert ei.value.stage == "session_setup"
    assert "signature could not be verified" in ei.value.message


def test_wrong_session_key_fails_aes256(samba_lab: SambaLab, alice: GssToken) -> None:
    """Sealed session, wrong key: the server cannot decrypt our TREE_CONNECT and hangs up.

    (With encryption required, smbprotocol skips its SESSION_SETUP signature check, so the
    failure shows at the first encrypted request; cifs.ko never checks that signature at all.)
    """
    with pytest.raises(SmbClientError) as ei:
        smb_session(
            samba_lab,
            alice.blob,
            _flip(alice.session_key),
            share="secure",
            ciphers=["AES-256-GCM"],
            encrypt=True,
        )
    assert ei.value.stage == "tree_connect"
    assert "closed" in ei.value.message


def test_garbage_blob_fails_at_session_setup(samba_lab: SambaLab, alice: GssToken) -> None:
    with pytest.raises(SmbClientError) as ei:
        smb_session(samba_lab, b"\x60\x03garbage" * 8, alice.session_key)
    assert ei.value.stage == "session_setup"
    assert ei.value.status is not None and ei.value.status != "STATUS_SUCCESS"


def test_second_leg_is_an_error(samba_lab: SambaLab, alice: GssToken) -> None:
    """A blob the server answers with MORE_PROCESSING_REQUIRED (a raw NTLMSSP NEGOTIATE) fails:
    the kernel sends exactly one SESSION_SETUP with the upcall's blob."""
    ntlm_negotiate = b"NTLMSSP\x00" + struct.pack("<II", 1, 0xE2088297) + bytes(16)
    with pytest.raises(SmbClientError) as ei:
        smb_session(samba_lab, ntlm_negotiate, alice.session_key)
    assert ei.value.stage == "session_setup"
    assert ei.value.status == "STATUS_MORE_PROCESSING_REQUIRED"


def test_server_log_names_alice(samba_lab: SambaLab, alice: GssToken) -> None:
    r: SmbResult = smb_session(samba_lab, alice.blob, alice.session_key)
    assert r.server_user == "alice"
    assert r"Successful AuthZ: [SMB2,krb5] user [LAB]\[alice]" in samba_lab.smb_log_text()


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_written_file_is_owned_by_the_user(
    samba_lab: SambaLab, token_for: TokenFactory, user: str
) -> None:
    tok = token_for(user)
    name = f"w-{user}-{uuid.uuid4().hex[:8]}.txt"
    data = f"written as {user}\n".encode()
    r = smb_session(
        samba_lab, tok.blob, tok.session_key, dialect="3.1.1", write_path=name, write_data=data
    )
    path = Path(samba_lab.share) / name
    try:
        assert path.read_bytes() == data
        assert r.written == name
        assert r.written_owner == user
        assert server_owner(samba_lab, path) == user
        assert r.server_user == user
    finally:
        path.unlink(missing_ok=True)
