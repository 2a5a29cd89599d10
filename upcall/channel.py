"""The channels of a warm-daemon handler (SEQPACKET socketpairs, one message a record set).

To the parent: how the parent hands the handler its connection (HANDOFF), and the handler's
request to warm the policy and krb5.conf it parsed (`Warmth`, in the parent). To the cache
keeper (keeper.py): the gssproxy credential cache (`CacheState`, in the keeper; lookups
answered at once, updates kept). The cache lives in the keeper alone, a process nothing is
forked from: no handler or worker inherits another user's credential or even its name.
`ChannelLink` is the handler's side of both. `on_message` and `on_warm` trust a handler no
further than its bounded, checked records.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from dataclasses import dataclass
from typing import Protocol

from . import wire
from .policy.file import DEFAULT_PATH as DEFAULT_POLICY
from .sources.proxy_cache import CRED_MAX, CacheKey, CredCache, ProxyCache

UPDATE_MAX = CRED_MAX + 4096  # one message on a handler's channel, bounded


@dataclass
class CacheState:
    """Keeper: gssproxy credentials of earlier upcalls (root-only memory, never persisted),
    valid for the policy file they were made under (`sig`); a changed policy empties it.
    The one owner of that rule: handlers reach it through ChannelLink, tests directly."""

    cache: ProxyCache
    sig: str = ""

    def view(self, sig: str) -> CredCache:
        """What a request made under policy `sig` may use: nothing made under another."""
        return self.cache if sig == self.sig else ProxyCache()

    def put(self, sig: str, key: CacheKey, blob: bytes, expires: int) -> None:
        if sig != self.sig:
            self.cache.clear()  # the policy changed: nothing made under the old one is kept
            self.sig = sig
        self.cache.put(key, blob, expires)

    def warm(self, policy: str | None, krb5: str | None) -> None:
        """(Part of CacheLink for in-process use: there is nothing to warm.)"""


@dataclass
class Warmth:
    """Parent: what the handlers' last request used, parsed here so that handlers forked
    from now on find it parsed (policy_file.parse, profile.read keep what they parsed; the
    files are still checked and read per request), and what a spare should prepare for."""

    last: tuple[str | None, str | None] = (None, None)  # the policy, krb5.conf last warmed
    proxy: str | None = None  # None: that policy names no gssproxy socket; else its only
    # socket, or "" when it names several

    def warm(self, policy: str | None, krb5: str | None) -> None:
        from .krb5 import profile
        from .policy import file as policy_file

        with contextlib.suppress(Exception):  # the handler reports the problem, not us
            profile.load(krb5)
        try:
            sockets = policy_file.load(policy).sockets
        except Exception:
            sockets = frozenset()
        self.last = (policy, krb5)
        self.proxy = (next(iter(sockets)) if len(sockets) == 1 else "") if sockets else None


class CacheLink(Protocol):
    """Handler: what it asks of the daemon (ChannelLink; CacheState in-process): the cache,
    and to warm what this request parsed."""

    def view(self, sig: str) -> CredCache: ...

    def put(self, sig: str, key: CacheKey, blob: bytes, expires: int) -> None: ...

    def warm(self, policy: str | None, krb5: str | None) -> None: ...


def _key_records(sig: str, key: CacheKey) -> bytes:
    return b"".join(wire.record(t, v.encode()) for t, v in (
        (b"s", sig), (b"p", key.principal), (b"h", key.host), (b"k", key.socket)))  # fmt: skip


LOOKUP_TIMEOUT = 0.5  # seconds for the keeper to answer a cache lookup (it only looks up)


class ChannelLink:
    """Handler: the keeper's CacheState over `cache` and the parent's Warmth over `chan`.
    One message a question: `g` (lookup) answered by `b` (the blob, maybe empty); `u`
    (update) and `w` (warm), unanswered. A keeper that does not answer in time is a miss,
    never a wait."""

    def __init__(self, chan: socket.socket, cache: socket.socket | None) -> None:
        self.chan, self.cache = chan, cache  # cache None: the keeper is gone, no cache

    def view(self, sig: str) -> CredCache:
        return _ChannelView(self, sig)

    def lookup(self, sig: str, key: CacheKey) -> bytes | None:
        if self.cache is None:
            return None
        try:
            self.cache.settimeout(LOOKUP_TIMEOUT)
            self.cache.send(wire.record(b"g", b"") + _key_records(sig, key))
            data = self.cache.recv(UPDATE_MAX)
            recs, rest = wire.records(data, UPDATE_MAX)
        except (OSError, ValueError):
            return None
        if rest or len(recs) != 1 or recs[0][0] != b"b":
            return None
        return recs[0][1] or None

    def warm(self, policy: str | None, krb5: str | None) -> None:
        msg = wire.record(b"w", b"") + wire.record(b"P", (policy or "").encode())
        msg += wire.record(b"H", (krb5 or "").encode())
        if len(msg) <= UPDATE_MAX:
            with contextlib.suppress(OSError):
                self.chan.send(msg)

    def put(self, sig: str, key: CacheKey, blob: bytes, expires: int) -> None:
        msg = wire.record(b"u", b"") + _key_records(sig, key)
        msg += wire.record(b"b", blob) + wire.record(b"e", b"%d" % expires)
        if len(msg) <= UPDATE_MAX and self.cache is not None:
            with contextlib.suppress(OSError):
                self.cache.send(msg)


@dataclass(frozen=True)
class _ChannelView:
    link: ChannelLink
    sig: str

    def get(self, key: CacheKey) -> bytes | None:
        return self.link.lookup(self.sig, key)


def on_message(data: bytes, state: CacheState) -> bytes | None:
    """Keeper: one message from a handler's cache channel; the answer to send back, if any.
    Malformed messages are dropped (a lookup gets an empty answer)."""
    try:
        recs, rest = wire.records(data, UPDATE_MAX)
        op = recs[0][0] if recs else b""
        f = dict(recs[1:])
        if rest:
            raise ValueError("truncated")
        sig = f[b"s"].decode()
        key = CacheKey(f[b"p"].decode(), f[b"h"].decode(), f[b"k"].decode())
    except (KeyError, ValueError, UnicodeDecodeError):
        return wire.record(b"b", b"") if data[:1] == b"g" else None
    if op == b"g":
        return wire.record(b"b", state.view(sig).get(key) or b"")
    if op == b"u":
        try:
            blob, expires = f[b"b"], int(f[b"e"])
        except (KeyError, ValueError):
            return None
        state.put(sig, key, blob, expires)
    return None


def on_warm(data: bytes, warmth: Warmth) -> None:
    """Parent: one message from a handler's channel: only `w` (warm) is taken."""
    try:
        recs, rest = wire.records(data, UPDATE_MAX)
        f = dict(recs[1:])
        if rest or not recs or recs[0][0] != b"w":
            return
        warmth.warm(f[b"P"].decode() or None, f[b"H"].decode() or None)
    except (KeyError, ValueError, UnicodeDecodeError):
        return


def policy_sig(path: str | None) -> str:
    """What identifies the policy file's content for the cache: inode, mtime, size."""
    try:
        st = os.stat(path or DEFAULT_POLICY)
    except OSError:
        return "none"
    return f"{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"


HANDOFF = struct.Struct("d?")  # when the request was accepted; whether the daemon is busy
