"""`struct cifs_spnego_msg` (kernel cifs_spnego.h). Pure.

    u32 version; u32 flags; u32 sesskey_len; u32 secblob_len; u8 data[]  (key, then blob)
Native byte order: producer and consumer are the same machine. No trailing padding: the kernel
reads exactly sesskey_len + secblob_len bytes after the 16-byte header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_HEADER = struct.Struct("=IIII")


@dataclass(frozen=True)
class SpnegoMsg:
    version: int
    session_key: bytes
    blob: bytes
    flags: int = 0

    def pack(self) -> bytes:
        header = _HEADER.pack(self.version, self.flags, len(self.session_key), len(self.blob))
        return header + self.session_key + self.blob

    @classmethod
    def unpack(cls, data: bytes) -> SpnegoMsg:
        if len(data) < _HEADER.size:
            raise ValueError("payload shorter than its header")
        version, flags, klen, blen = _HEADER.unpack_from(data)
        if len(data) != _HEADER.size + klen + blen:
            raise ValueError(f"payload is {len(data)} bytes, header says {16 + klen + blen}")
        key = data[16 : 16 + klen]
        return cls(version=version, flags=flags, session_key=key, blob=data[16 + klen :])
