"""journald's native protocol (upcall/journal.py) and the log sink, without a journald: the
datagram is decoded by a reader written here from the protocol's description and received on a
real AF_UNIX datagram socket of the test's own."""

from __future__ import annotations

import re
import socket
import struct
import syslog
from pathlib import Path

import pytest

from upcall import journal, log
from upcall.errors import Reason

CATALOG = Path(__file__).resolve().parents[2] / "upcall/cifs-upcall.catalog"


def decode(data: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        nl = data.index(b"\n", pos)
        line = data[pos:nl]
        if b"=" in line:
            k, _, v = line.partition(b"=")
            out[k.decode()] = v
            pos = nl + 1
        else:
            (n,) = struct.unpack_from("<Q", data, nl + 1)
            out[line.decode()] = data[nl + 9 : nl + 9 + n]
            assert data[nl + 9 + n : nl + 10 + n] == b"\n"
            pos = nl + 10 + n
    return out


def test_encode_plain_and_binary_values() -> None:
    data = journal.encode({"MESSAGE": "a=b c", "CIFS_UPCALL_ERROR": "two\nlines", "X": None,
                           "CIFS_UPCALL_UID": 1000})  # fmt: skip
    assert data.startswith(b"MESSAGE=a=b c\n")
    assert b"CIFS_UPCALL_ERROR\n" + struct.pack("<Q", 9) + b"two\nlines\n" in data
    assert decode(data) == {"MESSAGE": b"a=b c", "CIFS_UPCALL_ERROR": b"two\nlines",
                            "CIFS_UPCALL_UID": b"1000"}  # fmt: skip


@pytest.mark.parametrize("name", ["_PID", "lower", "1ABC", "A" * 65, "A-B", ""])
def test_invalid_field_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        journal.encode({name: "x"})
    assert journal.send({name: "x"}, "/nonexistent") is False


def test_every_reason_has_a_message_id_in_the_catalog() -> None:
    ids = set(re.findall(r"^-- ([0-9a-f]{32})$", CATALOG.read_text(), re.M))
    assert ids == set(journal.MESSAGE_IDS.values())
    assert len(ids) == len(journal.MESSAGE_IDS)
    for r in Reason:
        assert journal.message_id(r.value) in ids
    assert journal.message_id(None) == journal.MESSAGE_IDS["ok"]
    assert journal.message_id("s4u2proxy-refused") == journal.MESSAGE_IDS["impersonation"]


def _server(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "journal.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    return s, path


def test_send_is_one_datagram(tmp_path: Path) -> None:
    s, path = _server(tmp_path)
    with s:
        f = journal.fields_for(
            priority=3,
            message="m",
            outcome="failed",
            reason="s4u2proxy-refused",
            uid=23004,
            impersonated=False,
        )
        assert journal.send(f, path)
        got = decode(s.recv(65536))
    assert got["CIFS_UPCALL_REASON"] == b"s4u2proxy-refused"
    assert got["CIFS_UPCALL_IMPERSONATED"] == b"no"
    assert got["MESSAGE_ID"] == journal.MESSAGE_IDS["impersonation"].encode()
    assert got["SYSLOG_IDENTIFIER"] == b"cifs-upcall" and got["PRIORITY"] == b"3"


def test_large_entry_goes_in_a_sealed_memfd(tmp_path: Path) -> None:
    s, path = _server(tmp_path)
    big = "x" * 300_000  # above the default datagram limit (net.core.wmem_default)
    with s:
        assert journal.send({"MESSAGE": big}, path)
        data, anc, _, _ = s.recvmsg(16, socket.CMSG_LEN(4))
        assert data == b""
        fd = struct.unpack("i", anc[0][2][:4])[0]
        import fcntl
        import os

        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
            os.lseek(fd, 0, os.SEEK_SET)
            content = b""
            while chunk := os.read(fd, 1 << 20):
                content += chunk
        finally:
            os.close(fd)
    assert decode(content)["MESSAGE"] == big.encode()


def test_log_sink_prefers_journald_and_falls_back(tmp_path: Path) -> None:
    s, path = _server(tmp_path)
    with s:
        log.setup(debug=False, echo=False, journal_socket=path)
        line = "outcome=failed reason=x"
        log.emit(syslog.LOG_ERR, line, journal.entry(syslog.LOG_ERR, line, outcome="failed",
                                                     reason="x"))  # fmt: skip
        got = decode(s.recv(65536))
        assert got["MESSAGE"] == b"outcome=failed reason=x"
        assert got["CIFS_UPCALL_REASON"] == b"x" and got["PRIORITY"] == b"3"
    log.setup(debug=False, echo=False, journal_socket=str(tmp_path / "none"))
    assert log._journal is None  # no journald: plain syslog, as before
