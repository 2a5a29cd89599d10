"""The warm daemon's memory of what gssproxy handed its workers: pure, parent-side, never
persisted.

A proxy worker that made a token can hand back its credential as an opaque blob (a one-entry
FILE ccache holding the interposer's X-GSSPROXY entry: gssproxy's gssx_cred, whose tickets and
keys gssproxy encrypted with a key of its service's keytab). A later worker for the same user,
server and socket given that blob makes its token without S4U2Self; when the gssproxy service
has `allow_client_ccache_sync = yes` and no `ccache` in its cred_store, the blob also carries
the S4U2Proxy ticket and the repeat makes no KDC request at all.

The parent never looks inside a blob (it must not make GSSAPI calls); it only bounds what it
keeps: entries end at the credential's end time minus MARGIN, the least recently used go first
past MAX_ENTRIES or MAX_BYTES, and `clear()` drops everything when the policy file changes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ..errors import WorkerProtocolError

CRED_MAX = 16 * 1024  # bytes; hex doubles it and the whole worker result is 64 KiB at most
MARGIN = 300  # seconds: an entry this close to its credential's end is not handed out
MAX_ENTRIES = 1024
MAX_BYTES = 8 * 1024 * 1024
_EXPIRES_MAX = 2**40  # a sane unix time (year 36812); anything beyond is a lie


@dataclass(frozen=True)
class CacheKey:
    principal: str  # the impersonated user, e.g. alice@LAB.TEST
    host: str  # the server name from the upcall (the SPN's host part)
    socket: str  # the gssproxy socket: one service, one keytab, one blob key


class CredCache(Protocol):
    """What the pipeline asks of a cache: the daemon's ProxyCache, or a handler's view of it
    over its channel to the daemon (daemon.ChannelLink)."""

    def get(self, key: CacheKey) -> bytes | None: ...


@dataclass(frozen=True)
class _Entry:
    blob: bytes
    until: float  # unix seconds: credential end minus the margin


class ProxyCache:
    """Bounded LRU map CacheKey -> blob, entries expiring with their credential."""

    def __init__(
        self,
        *,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        margin: float = MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._margin = margin
        self._clock = clock
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes of blobs held."""
        return self._bytes

    def get(self, key: CacheKey) -> bytes | None:
        """The blob for `key` if it is still good for a while; the entry becomes the newest."""
        e = self._entries.get(key)
        if e is None:
            return None
        if self._clock() >= e.until:
            self.discard(key)
            return None
        self._entries.move_to_end(key)
        return e.blob

    def put(self, key: CacheKey, blob: bytes, expires: int) -> bool:
        """Keep `blob` until `expires` (unix seconds) minus the margin; False if it is not
        worth keeping (empty, oversized, or ending within the margin). Replaces any old one."""
        self.discard(key)
        until = expires - self._margin
        if not blob or len(blob) > CRED_MAX or len(blob) > self._max_bytes:
            return False
        if until <= self._clock():
            return False
        self._entries[key] = _Entry(bytes(blob), until)
        self._bytes += len(blob)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, old = self._entries.popitem(last=False)
            self._bytes -= len(old.blob)
        return True

    def discard(self, key: CacheKey) -> None:
        e = self._entries.pop(key, None)
        if e is not None:
            self._bytes -= len(e.blob)

    def clear(self) -> None:
        """Forget everything: the policy changed (or gssproxy's service did)."""
        self._entries.clear()
        self._bytes = 0


def parse_cred(res: Mapping[str, object], what: str = "worker") -> tuple[bytes, int] | None:
    """Parent: the (blob, expires) a proxy worker's result offers, None if it offers none,
    WorkerProtocolError if what it offers is malformed. The blob stays opaque."""
    if "cred" not in res and "cred_expires" not in res:
        return None
    hexblob, expires = res.get("cred"), res.get("cred_expires")
    bad = WorkerProtocolError(f"{what} returned a malformed credential")
    if not isinstance(hexblob, str) or not 0 < len(hexblob) <= 2 * CRED_MAX:
        raise bad
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise bad
    if not 0 < expires < _EXPIRES_MAX:
        raise bad
    try:
        blob = bytes.fromhex(hexblob)
    except ValueError:
        raise bad from None
    return blob, expires


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("short")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def u(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def counted(self) -> bytes:
        return self.take(self.u(4))

    def principal(self) -> tuple[str, list[str]]:
        self.u(4)  # name type
        count = self.u(4)
        realm = self.counted().decode()
        return realm, [self.counted().decode() for _ in range(count)]


GPKRB_REALM = "X-GSSPROXY:"  # the interposer's entry: X-GSSPROXY:/Encrypted/Credentials/v1


def gssproxy_blob_principal(blob: bytes) -> str | None:
    """Worker: the client of a blob that is a FILE ccache (v4) whose first entry is the
    interposer's X-GSSPROXY entry for that same client; None for anything else. Pure."""
    try:
        r = _Reader(blob)
        if r.u(2) != 0x0504:
            return None
        r.take(r.u(2))  # header tags
        realm, comps = r.principal()
        client = r.principal()
        server_realm, server = r.principal()
    except (ValueError, UnicodeDecodeError):
        return None
    if client != (realm, comps) or server_realm != GPKRB_REALM or not comps:
        return None
    if server != ["Encrypted", "Credentials", "v1"]:
        return None
    return "/".join(comps) + "@" + realm
