"""doctor's thin edges: each function reads one part of the live system into facts.

Runs in the doctor process (root, an admin's shell, host namespaces). The GSSAPI probes run in
forked children (upcall.worker.child), so the interposer environment one of them sets never
leaks into another or into the parent. `root` is a prefix for /etc (request-key.d, request-key.conf,
gssproxy, the default policy path), so tests can point doctor at a tree of their own.
"""

from __future__ import annotations

import os
import re
import secrets
import socket as socketmod
import stat
import struct
import subprocess
import time
from functools import partial
from pathlib import Path

from ..krb5.keytab import KeytabError, first_entry
from .facts import (
    DryRunFacts,
    KdcFacts,
    KeytabFacts,
    Krb5Facts,
    PolicyFacts,
    RequestKeyFacts,
    RouteFacts,
    ServiceFacts,
    SocketFacts,
    SpnFacts,
)
from .kerberos import as_req, parse_krb_error

REQUEST_KEY = "/sbin/request-key"
_PREFER = re.compile(r"^(\S+):(\d+): Prefer command")
_RUN = re.compile(r"^Run (\S+)")
_ARGV = re.compile(r'^- argv\[(\d+)\] = "(.*)"$')


def probe_description(server: str) -> str:
    """A description as cifs.ko builds it (only request-key's matching reads it)."""
    return (f"cifs.spnego;0;0;39010000;ver=0x2;host={server};ip4=127.0.0.1;sec=krb5;uid=0x0;"
            "creduid=0x0;pid=0x1;upcall_target=app")  # fmt: skip


def parse_request_key_debug(text: str) -> RequestKeyFacts:
    """`request-key -d -v` output -> the chosen line. Pure."""
    where, program, argv = "", None, {}
    for line in text.splitlines():
        if m := _PREFER.match(line):
            where = f"{m[1]}:{m[2]}"
        elif m := _RUN.match(line):
            program = m[1]
        elif m := _ARGV.match(line):
            argv[int(m[1])] = m[2]
    if program is None:
        errors = [ln for ln in text.splitlines() if "rror" in ln or "not found" in ln.lower()]
        return RequestKeyFacts(None, error=errors[-1] if errors else "")
    args = tuple(argv[i] for i in sorted(argv) if i > 0)
    return RequestKeyFacts(program, args, where)


def request_key(root: str, server: str) -> RequestKeyFacts:
    """Ask request-key itself which line it would run (`-d`: it prints, never executes)."""
    argv = [REQUEST_KEY, "-d", "-n", "-v", "-D", probe_description(server)]
    cwd = None
    if root != "/":
        argv.insert(1, "-l")  # request-key.d/ and request-key.conf from the current directory
        cwd = os.path.join(root, "etc")
    argv += ["create", "1", "0", "0", "0", "0", "0", "x"]
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as e:
        return RequestKeyFacts(None, error=f"cannot run {REQUEST_KEY}: {e}")
    f = parse_request_key_debug(res.stdout + "\n" + res.stderr)
    if f.program is None:
        return f
    etc = os.path.join(root, "etc")
    where = f.where
    if where and not where.startswith("/"):
        name = os.path.basename(where)
        sub = "" if name.startswith("request-key.conf") else "request-key.d"
        where = os.path.join(etc, sub, name)
    return RequestKeyFacts(f.program, f.argv, where, f.error, os.access(f.program, os.X_OK))


def policy(path: str, explicit: bool) -> tuple[PolicyFacts, object | None]:
    """Trust and schema of the policy file, with the helper's own loader."""
    from ..errors import BadPolicy
    from ..policy import file as policy_file
    from ..policy.rules import Policy

    exists = os.path.lexists(path)
    if not exists and not explicit:
        return PolicyFacts(path, explicit, False), Policy()
    try:
        pol = policy_file.load(path)
    except BadPolicy as e:
        return PolicyFacts(path, explicit, exists, e.message), None
    socks: list[tuple[str, str]] = []
    for sock, kind in [(pol.defaults.socket, pol.defaults.proxy)] + [
        (r.socket or pol.defaults.socket, r.proxy or pol.defaults.proxy) for r in pol.rules
    ]:
        if sock and (sock, kind.value) not in socks:
            socks.append((sock, kind.value))
    return PolicyFacts(path, explicit, True, "", tuple(socks), len(pol.rules)), pol


def _probe_gssproxy(socket: str, kind: str, principal: str) -> dict[str, object]:
    """Child body (root, host namespaces): one acquire through the interposer. S4U2Self (or
    the own-keytab AS exchange) for `principal`; any KDC answer proves a service for root."""
    from ..krb5.classify import ProxyPhase, classify_proxy
    from ..sources.proxy import _interpose

    _interpose(socket, None)
    import gssapi

    from ..krb5 import gss

    try:
        gssapi.Credentials(
            name=gssapi.Name(principal, gssapi.NameType.kerberos_principal),
            usage="initiate",
            mechs=[gss.KRB5],
        )
    except gssapi.exceptions.GSSError as e:
        c = classify_proxy(e.min_code or 0, phase=ProxyPhase.ACQUIRE, who=principal,
                           impersonation=kind == "impersonate")  # fmt: skip
        return {"reason": c.reason.value, "message": f"{e.gen_message()} ({c.hint})"}
    return {"reason": "", "message": "acquired"}


def gssproxy_socket(sock: str, kind: str, principal: str, deadline: float = 8) -> SocketFacts:
    from ..errors import UpcallError
    from ..worker import child

    d = os.path.dirname(sock)
    try:
        st = os.stat(d)
    except OSError:
        return SocketFacts(sock, kind, False)
    base = SocketFacts(sock, kind, True, st.st_uid, st.st_mode, stat.S_ISDIR(st.st_mode))
    if base.dir_uid != 0 or base.dir_mode & 0o077:
        return base
    s = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(sock)
    except OSError as e:
        return SocketFacts(**{**base.__dict__, "connect_error": e.strerror or str(e)})
    finally:
        s.close()
    try:
        res = child.run(partial(_probe_gssproxy, sock, kind, principal), deadline, "gssproxy probe")
    except UpcallError as e:
        res = {"reason": e.reason.value, "message": e.message}
    return SocketFacts(**{**base.__dict__, "probe_reason": str(res["reason"]),
                          "probe_message": str(res["message"])})  # fmt: skip


def parse_gssproxy_dir(conf_dir: str) -> list[tuple[str, str, dict[str, list[str]]]]:
    """(file:line, section, options) of every [service/...] in conf_dir/*.conf, file order."""
    out: list[tuple[str, str, dict[str, list[str]]]] = []
    try:
        names = sorted(n for n in os.listdir(conf_dir) if n.endswith(".conf"))
    except OSError:
        return out
    for n in names:
        path = os.path.join(conf_dir, n)
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            continue
        cur: dict[str, list[str]] | None = None
        for i, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                sect = line[1:-1].strip()
                cur = {} if sect.startswith("service/") else None
                if cur is not None:
                    out.append((f"{path}:{i}", sect, cur))
            elif cur is not None and "=" in line:
                k, _, v = line.partition("=")
                cur.setdefault(k.strip(), []).append(v.strip())
    return out


def gssproxy_service(conf_dir: str, sock: str, kind: str) -> ServiceFacts:
    for where, sect, opts in parse_gssproxy_dir(conf_dir):
        if sock not in opts.get("socket", []):
            continue
        want = "keytab:" if kind == "impersonate" else "client_keytab:"
        kt = next((c[len(want) :] for c in opts.get("cred_store", []) if c.startswith(want)), "")
        return ServiceFacts(sock, conf_dir, sect, where, kt,
                            (opts.get("krb5_principal") or [""])[0],
                            (opts.get("euid") or [""])[0])  # fmt: skip
    return ServiceFacts(sock, conf_dir)


def keytab(path: str, expected: str) -> KeytabFacts:
    path = path.removeprefix("FILE:")
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return KeytabFacts(path, expected, error=f"cannot read it: {e.strerror}")
    try:
        return KeytabFacts(path, expected, first_entry(data).principal)
    except KeytabError as e:
        if str(e) == "no entries":
            return KeytabFacts(path, expected, None)
        return KeytabFacts(path, expected, error=f"not a keytab: {e}")
    except struct.error as e:
        return KeytabFacts(path, expected, error=f"not a keytab: {e}")


# --- krb5.conf ---------------------------------------------------------------------------------

_SNIPPET = re.compile(r"[A-Za-z0-9_-]+(\.conf)?")


def krb5(files: str | None = None, snippet_dir: str = "/etc/krb5.conf.d") -> Krb5Facts:
    """The relations doctor needs, read by the helper's own krb5.conf reader (krb5/profile)."""
    from ..krb5.profile import read

    files = files or os.environ.get("KRB5_CONFIG") or "/etc/krb5.conf"
    prof = read(files)
    try:
        snippets = tuple(n for n in sorted(os.listdir(snippet_dir)) if _SNIPPET.fullmatch(n))
    except OSError:
        snippets = ()
    rel = prof.relations
    realm = rel.get(("libdefaults", "default_realm"))
    return Krb5Facts(
        tuple(files.split(":")), realm, rel.get(("libdefaults", "forwardable")),
        prof.includedirs, snippet_dir, snippets, prof.realm_kdcs.get(realm or "", ()),
        rel.get(("libdefaults", "dns_lookup_kdc")),
    )  # fmt: skip


def kdc(address: str, realm: str, now: object = time.time, timeout: float = 3) -> KdcFacts:
    """Send an AS-REQ for a principal that does not exist; the KRB-ERROR gives the KDC's time.
    `now` is this machine's clock (a test may hand in a shifted one: a fake, named as such)."""
    clock = now if callable(now) else time.time
    host, _, port_s = address.rpartition(":") if address.count(":") == 1 else (address, "", "")
    port = int(port_s) if port_s else 88
    client = f"cifs-upcall-doctor-{secrets.token_hex(4)}"
    last = ""
    for transport in ("udp", "tcp"):
        t0 = clock()
        m0 = time.monotonic()
        req = as_req(client, realm, secrets.randbits(31), t0)
        try:
            infos = socketmod.getaddrinfo(
                host,
                port,
                type=socketmod.SOCK_DGRAM if transport == "udp" else socketmod.SOCK_STREAM,
            )
            fam, typ, proto, _, sa = infos[0]
            with socketmod.socket(fam, typ, proto) as s:
                s.settimeout(timeout)
                if transport == "udp":
                    s.sendto(req, sa)
                    data = s.recv(65535)
                else:
                    s.connect(sa)
                    s.sendall(struct.pack(">I", len(req)) + req)
                    data = _recv_tcp(s)
        except (OSError, ValueError) as e:
            last = f"{transport}: {getattr(e, 'strerror', None) or e}"
            continue
        rtt = time.monotonic() - m0
        local = t0 + rtt / 2
        try:
            err = parse_krb_error(data)
        except (ValueError, IndexError) as e:
            return KdcFacts(f"{host}:{port}", True, transport, rtt * 1000, error=f"reply: {e}")
        return KdcFacts(f"{host}:{port}", True, transport, rtt * 1000, err.stime, local,
                        err.error_code)  # fmt: skip
    return KdcFacts(f"{host}:{port}", False, error=last)


def _recv_tcp(s: socketmod.socket) -> bytes:
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
        chunk = s.recv(65536)
        if not chunk:
            raise ValueError("connection closed")
        buf += chunk
        if len(buf) > 1 << 20:
            raise ValueError("reply too large")
    return buf[4 : 4 + struct.unpack(">I", buf[:4])[0]]


def _tgs_child(keytab: str, principal: str, server: str) -> dict[str, object]:
    """Child body (root, host namespaces, no interposer): a TGS request for cifs@server with the
    keytab's credentials in a MEMORY cache."""
    os.environ["GSS_USE_PROXY"] = "no"
    os.environ["KRB5CCNAME"] = "MEMORY:cifs-upcall-doctor"
    import gssapi

    from ..krb5 import gss
    from ..krb5.classify import classify

    spn = f"cifs@{server}"
    try:
        creds = gssapi.Credentials(
            name=gssapi.Name(principal, gssapi.NameType.kerberos_principal),
            usage="initiate",
            mechs=[gss.KRB5],
            store={"client_keytab": keytab, "ccache": "MEMORY:cifs-upcall-doctor"},
        )
        ctx = gssapi.SecurityContext(
            name=gssapi.Name(spn, gssapi.NameType.hostbased_service), creds=creds,
            usage="initiate", mech=gss.KRB5,
        )  # fmt: skip
        ctx.step()
    except gssapi.exceptions.GSSError as e:
        c = classify(e.min_code or 0, who=principal, spn=spn)
        return {"ok": False, "reason": c.reason.value, "message": e.gen_message(), "hint": c.hint}
    return {"ok": True, "spn": str(ctx.target_name) if ctx.target_name else spn}


def spn(server: str, keytab_path: str, principal: str, deadline: float = 10) -> SpnFacts:
    from ..errors import UpcallError
    from ..worker import child

    if not keytab_path or not principal:
        return SpnFacts(server, "")
    try:
        res = child.run(partial(_tgs_child, keytab_path, principal, server), deadline, "TGS")
    except UpcallError as e:
        return SpnFacts(server, principal, keytab_path, False, "", e.reason.value, e.message,
                        e.hint)  # fmt: skip
    return SpnFacts(server, principal, keytab_path, bool(res.get("ok")), str(res.get("spn", "")),
                    str(res.get("reason", "")), str(res.get("message", "")),
                    str(res.get("hint", "")))  # fmt: skip


def dry_run(user: str, server: str, helper_argv: list[str]) -> DryRunFacts:
    """A full upcall for `user` at `server` with no process of the user: the request a mount
    with upcall_target=mount would send, run with the request-key line's own options."""
    import pwd

    from ..cli import parse_args
    from ..kernel.request import Request, SecType, UpcallTarget
    from ..pipeline import run_upcall
    from ..respond import options

    try:
        uid = int(user) if user.isdecimal() else pwd.getpwnam(user).pw_uid
    except KeyError:
        return DryRunFacts(user, server, None)
    args = helper_argv[:-1] if helper_argv and helper_argv[-1].isdecimal() else helper_argv
    a = parse_args(args)
    # doctor runs in the admin's environment: KRB5_CONFIG there names the host's krb5.conf
    a.host_krb5_config = a.host_krb5_config or os.environ.get("KRB5_CONFIG")
    req = Request(2, server, SecType.KRB5, None, uid, uid, None, None, UpcallTarget.MOUNT)
    out = run_upcall(req, options(a))
    return DryRunFacts(
        user, server, uid, out.ok, out.reason.value if out.reason else "", out.message,
        out.hint, out.source, out.principal, out.spn,
        bool(out.token and out.token.impersonated), [a.as_dict() for a in out.trail],
    )  # fmt: skip


def caller_route(pid: int, server: str) -> RouteFacts:
    """Doctor (root, host namespaces): the route from the caller's network namespace to the
    server, by pyroute2 on /proc/PID/ns/net (a helper process of pyroute2's enters it; this
    process never does). Off the upcall path: pyroute2 costs ~200 ms to import."""
    import socket as socketmod

    try:
        theirs = os.stat(f"/proc/{pid}/ns/net").st_ino
        same = theirs == os.stat("/proc/self/ns/net").st_ino
    except OSError as e:
        return RouteFacts(pid, server, None, f"caller pid {pid}: {e.strerror}")
    try:
        address = socketmod.getaddrinfo(server, 445, type=socketmod.SOCK_STREAM)[0][4][0]
    except (OSError, UnicodeError) as e:
        return RouteFacts(pid, server, None, f"{server} does not resolve on the host: {e}",
                          same_netns=same)  # fmt: skip
    try:
        from pyroute2 import NetNS
    except ImportError:
        return RouteFacts(pid, server, str(address), "pyroute2 is not installed (python3-pyroute2)",
                          same_netns=same)  # fmt: skip
    try:
        ns = NetNS(f"/proc/{pid}/ns/net", flags=0)
    except Exception as e:
        return RouteFacts(pid, server, str(address), f"cannot open its network namespace: {e}",
                          same_netns=same)  # fmt: skip
    try:
        try:
            route = ns.route("get", dst=str(address))[0]
        except Exception as e:
            return RouteFacts(pid, server, str(address), routed=False, error=str(e),
                              same_netns=same)  # fmt: skip
        oif = route.get_attr("RTA_OIF")
        links = ns.get_links(oif) if oif else []
        device = links[0].get_attr("IFLA_IFNAME") if links else ""
        return RouteFacts(
            pid, server, str(address), routed=True, device=str(device or ""),
            source=str(route.get_attr("RTA_PREFSRC") or ""),
            gateway=str(route.get_attr("RTA_GATEWAY") or ""), same_netns=same,
        )  # fmt: skip
    finally:
        ns.close()
