"""A Samba AD DC (realm LAB.TEST) in its own loopback-only network namespace.

Provisioned with samba-tool (about 8 s), started in the foreground by PID and stopped by PID.
Users and computers can be added while it runs: samba-tool works on sam.ldb directly and the
KDC sees changes at once. Everything lives under `base`; nothing is written to the host's /run.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import netns

ADMIN_PASSWORD = "Passw0rd.Admin"
# The chroot's programs get a clean environment: the host's (a venv's PATH, PYTHON*) would
# leak into the other distribution's Python.
CHROOT_ENV = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8")
# Directories of the (read-only) chroot that samba writes to regardless of its config.
CHROOT_SCRATCH = ("/var/log/samba", "/var/cache/samba")


@dataclass
class LabUser:
    name: str
    uid: int
    password: str
    principal: str


@dataclass
class SambaLab:
    base: Path
    ns: str = "cuplab"
    ip: str = "127.0.0.10"
    realm: str = "LAB.TEST"
    domain: str = "LAB"
    hostname: str = "dc1"
    # `chroot`: run samba from another distribution's root (the RBCD 4.22 DC); host tools still
    # talk to it through the namespace.
    chroot: Path | None = None
    pid: int | None = None
    users: dict[str, LabUser] = field(default_factory=dict)
    local_users: list[str] = field(default_factory=list)

    # --- paths -------------------------------------------------------------------------------
    @property
    def fqdn(self) -> str:
        return f"{self.hostname}.{self.realm.lower()}"

    @property
    def dc_dir(self) -> Path:
        return self.base / "dc"

    @property
    def smb_conf(self) -> Path:
        return self.dc_dir / "etc" / "smb.conf"

    @property
    def krb5_conf(self) -> Path:
        return self.base / "krb5.conf"

    @property
    def share(self) -> Path:
        return self.base / "share"

    @property
    def kdc_log(self) -> Path:
        return self.dc_dir / "log" / "samba.stdout"

    @property
    def smb_log_dir(self) -> Path:
        return self.dc_dir / "log"

    # --- running things in the namespace -------------------------------------------------------
    def _tool_argv(self, argv: Sequence[str]) -> list[str]:
        if self.chroot is None:
            return netns.exec_argv(self.ns, list(argv))
        # State lives in base (bound onto /lab inside the chroot); callers rewrite paths with
        # _inner(). The mounts live in a private mount namespace and vanish with the command.
        script = self._chroot_prelude() + 'exec chroot "$C" /usr/bin/env -i "$@"'
        return netns.exec_argv(
            self.ns, ["unshare", "-m", "sh", "-c", script, "sh", *CHROOT_ENV, *argv]
        )

    def _chroot_prelude(self) -> str:
        """Shell that sets up the chroot's mounts (run inside `ip netns exec` + `unshare -m`).

        The cached root is shared by every lab and session, so it is mounted read-only; the
        lab's state is bound onto /lab, and the places samba writes outside its configured
        paths (/tmp, /var/log/samba, /var/cache/samba) get private tmpfs.
        /etc/hosts and /etc/resolv.conf are the namespace's (ip netns exec bound them). /run is
        a tmpfs with the lab's run directory on /run/samba (libwbclient's compiled-in winbindd
        socket path).
        """
        assert self.chroot is not None
        c = shlex.quote(str(self.chroot))
        base = shlex.quote(str(self.base))
        run = shlex.quote(str(self.dc_dir / "run"))
        scratch = " ".join(f"$C{d}" for d in ("/tmp", *CHROOT_SCRATCH))
        return (
            f"C={c} && mount --bind $C $C && mount -o remount,bind,ro $C && "
            "mount --rbind /dev $C/dev && mount -t proc proc $C/proc && "
            "mount -t sysfs sysfs $C/sys && mount -t tmpfs -o mode=755 labrun $C/run && "
            f"for d in {scratch}; do mount -t tmpfs -o mode=1777 labtmp $d || exit 1; done && "
            f"mkdir -p $C/run/samba && mount --bind {base} $C/lab && "
            f"mkdir -p {run} && mount --bind {run} $C/run/samba && "
            "mount --bind /etc/hosts $C/etc/hosts && "
            "mount --bind /etc/resolv.conf $C/etc/resolv.conf && "
        )

    def _inner(self, path: Path) -> str:
        """A lab path as the DC's tools see it."""
        if self.chroot is None:
            return str(path)
        return "/lab/" + str(path.relative_to(self.base))

    def samba_tool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["samba-tool", *args, "-s", self._inner(self.smb_conf)]
        res = subprocess.run(self._tool_argv(argv), capture_output=True, text=True, timeout=120)
        if check and res.returncode != 0:
            raise RuntimeError(f"samba-tool {' '.join(args)} failed: {res.stdout}{res.stderr}")
        return res

    def env(self, **extra: str) -> dict[str, str]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KRB5_CONFIG": str(self.krb5_conf)}
        env.update(extra)
        return env

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv in the lab namespace, as `user` (setpriv, no capabilities) if given."""
        full = _as_user(user, argv)
        envv = ["env", "-i", *(f"{k}={v}" for k, v in (env or self.env()).items())]
        res = subprocess.run(
            netns.exec_argv(self.ns, [*envv, *full]),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and res.returncode != 0:
            raise RuntimeError(
                f"{' '.join(full)} failed ({res.returncode}): {res.stdout}{res.stderr}"
            )
        return res

    def popen(
        self, argv: Sequence[str], *, user: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        full = _as_user(user, argv)
        envv = ["env", "-i", *(f"{k}={v}" for k, v in (env or self.env()).items())]
        return subprocess.Popen(
            netns.exec_argv(self.ns, [*envv, *full]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    # --- lifecycle ------------------------------------------------------------------------------
    def provision(self) -> None:
        t = time.monotonic()
        if self.base.exists():
            shutil.rmtree(self.base)
        for d in ("dc/log", "dc/run", "dc/private", "share", "tmp"):
            (self.base / d).mkdir(parents=True)
        self.base.chmod(0o755)
        (self.base / "tmp").chmod(0o1777)
        netns.create(
            self.ns,
            [f"{self.ip}/8"],
            hosts=f"{self.ip} {self.fqdn} {self.hostname}\n",
            nameserver=self.ip,
        )
        empty = self.base / "empty.conf"
        empty.write_text("")
        argv = [
            "samba-tool", "domain", "provision", "-s", self._inner(empty),
            f"--targetdir={self._inner(self.dc_dir)}", f"--realm={self.realm}",
            f"--domain={self.domain}", f"--host-name={self.hostname}", f"--host-ip={self.ip}",
            "--server-role=dc", "--dns-backend=SAMBA_INTERNAL", f"--adminpass={ADMIN_PASSWORD}",
            f"--option=interfaces={self.ip}", "--option=bind interfaces only=yes",
            "--option=dns forwarder=127.0.0.1", "--option=disable netbios=yes",
        ]  # fmt: skip
        res = subprocess.run(self._tool_argv(argv), capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise RuntimeError(f"provision failed: {res.stdout}{res.stderr}")
        self._amend_smb_conf()
        self.krb5_conf.write_text(self.krb5_conf_text())
        (self.share / "hello.txt").write_text("hello from lab share\n")
        self.share.chmod(0o1777)
        self.samba_tool("domain", "passwordsettings", "set", "--complexity=off",
                        "--max-pwd-age=0", "--min-pwd-age=0")  # fmt: skip
        self.provision_seconds = time.monotonic() - t

    def _amend_smb_conf(self) -> None:
        run = self._inner(self.dc_dir / "run")
        log = self._inner(self.dc_dir / "log")
        text = self.smb_conf.read_text()
        extra = "\n".join(
            [
                f"\tpid directory = {run}",
                f"\tncalrpc dir = {run}/ncalrpc",
                f"\tntp signd socket directory = {run}/ntp_signd",
                f"\tusershare path = {run}/usershares",
                f"\tsmb passwd file = {self._inner(self.dc_dir / 'private')}/smbpasswd",
                f"\tlog file = {log}/log.%m",
                "\tserver services = s3fs, rpc, ldap, cldap, kdc, winbindd, dns",
                "\tdns update command = /bin/true",
                "\tspn update command = /bin/true",
                "\tsamba kcc command = /bin/true",
                "\tprefork children = 2",
                "\tlog level = 1 auth_audit:4 kerberos:3",
                "\tserver signing = mandatory",
                "\tserver min protocol = SMB2_02",
                "\tkdc default domain supported enctypes = aes256-cts-hmac-sha1-96 "
                "aes128-cts-hmac-sha1-96",
            ]
        )
        text = text.replace("[global]\n", "[global]\n" + extra + "\n", 1)
        share = self._inner(self.share)
        text += (
            f"\n[share]\n\tpath = {share}\n\tread only = no\n"
            f"\n[secure]\n\tpath = {share}\n\tread only = no\n\tsmb encrypt = required\n"
        )
        self.smb_conf.write_text(text)

    def krb5_conf_text(self, default_ccache_name: str | None = None) -> str:
        cc = f"\tdefault_ccache_name = {default_ccache_name}\n" if default_ccache_name else ""
        return (
            "[libdefaults]\n"
            f"\tdefault_realm = {self.realm}\n"
            "\tdns_lookup_kdc = false\n\tdns_lookup_realm = false\n"
            "\trdns = false\n\tdns_canonicalize_hostname = false\n"
            "\tforwardable = true\n\tudp_preference_limit = 0\n"
            f"{cc}"
            "[realms]\n"
            f"\t{self.realm} = {{\n\t\tkdc = {self.ip}\n\t\tadmin_server = {self.ip}\n\t}}\n"
            "[domain_realm]\n"
            f"\t.{self.realm.lower()} = {self.realm}\n\t{self.realm.lower()} = {self.realm}\n"
        )

    def start(self, timeout: float = 90) -> None:
        t = time.monotonic()
        out = open(self.kdc_log, "ab")  # noqa: SIM115 - handed to the child
        run = self.dc_dir / "run"
        if self.chroot is None:
            script = (
                "mount -t tmpfs -o mode=755 labrun /run && mkdir -p /run/samba && "
                f"mount --bind {run} /run/samba && "
                f"exec samba -s {self.smb_conf} -i --no-process-group"
            )
            argv = netns.exec_argv(self.ns, ["sh", "-c", script])
        else:
            # unshare, sh and chroot all exec: the pid is samba's master, as without a chroot.
            script = self._chroot_prelude() + 'exec chroot "$C" /usr/bin/env -i "$@"'
            inner = ["samba", "-s", self._inner(self.smb_conf), "-i", "--no-process-group"]
            argv = netns.exec_argv(
                self.ns, ["unshare", "-m", "sh", "-c", script, "sh", *CHROOT_ENV, *inner]
            )
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        out.close()
        self.pid = proc.pid
        self._proc = proc
        deadline = time.monotonic() + timeout
        while not all(self.port_open(p) for p in (88, 389, 445)):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"samba exited ({proc.returncode}): {self.kdc_log.read_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"samba not ready after {timeout}s")
            time.sleep(0.1)
        self.start_seconds = time.monotonic() - t

    def port_open(self, port: int) -> bool:
        res = subprocess.run(
            netns.exec_argv(self.ns, ["bash", "-c", f"exec 3<>/dev/tcp/{self.ip}/{port}"]),
            capture_output=True,
        )
        return res.returncode == 0

    def stop(self) -> None:
        """Stop the DC by PID (SIGTERM to the master takes every child with it)."""
        if self.pid is None:
            return
        proc = self._proc
        try:
            # The master is the child of `ip netns exec`/sh, which exec'd into it.
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.pid = None

    def teardown(self) -> None:
        self.stop()
        netns.delete(self.ns)
        # Lab users are shared by name with any other live lab session: leave them to it.
        if not [n for n in _live_lab_namespaces() if n != self.ns]:
            for name in self.local_users:
                subprocess.run(["userdel", name], capture_output=True)
        self.local_users.clear()
        if self.base.exists():
            shutil.rmtree(self.base, ignore_errors=True)

    # --- directory objects ------------------------------------------------------------------------
    def add_user(
        self, name: str, uid: int, password: str | None = None, local: bool = True
    ) -> LabUser:
        password = password or f"Pw.{name}.{uid}!"
        self.samba_tool("user", "create", name, password)
        self.samba_tool("user", "setexpiry", name, "--noexpiry")
        if local:
            self.add_local_user(name, uid)
        user = LabUser(name, uid, password, f"{name}@{self.realm}")
        self.users[name] = user
        return user

    def add_local_user(self, name: str, uid: int) -> None:
        try:
            pw = pwd.getpwnam(name)
            if pw.pw_uid != uid:
                raise RuntimeError(f"local user {name} exists with uid {pw.pw_uid}, wanted {uid}")
        except KeyError:
            subprocess.run(
                ["useradd", "-M", "-N", "-g", "users", "-u", str(uid), "-s", "/usr/sbin/nologin",
                 "-d", "/nonexistent", name],
                check=True,
            )  # fmt: skip
            self.local_users.append(name)

    def add_computer(self, name: str, password: str | None = None) -> Path:
        """A computer account with a password and its keys exported to a keytab (returned)."""
        acct = f"{name.upper()}$"
        password = password or f"{name}.Machine.Pw.123"
        self.samba_tool("computer", "create", name)
        self.samba_tool("user", "setpassword", acct, f"--newpassword={password}")
        self.samba_tool("user", "enable", acct)
        fqdn = f"{name.lower()}.{self.realm.lower()}"
        self.samba_tool("spn", "add", f"host/{fqdn}", acct)
        return self.export_keytab(acct, self.base / f"{name.lower()}.keytab")

    def export_keytab(self, principal: str, path: Path) -> Path:
        path.unlink(missing_ok=True)
        self.samba_tool("domain", "exportkeytab", self._inner(path), f"--principal={principal}")
        if not path.exists():
            raise RuntimeError(f"exportkeytab wrote no {path}")
        return path

    # --- tickets --------------------------------------------------------------------------------
    def kinit(
        self, user: LabUser, ccache: str, *, lifetime: str | None = None, as_user: bool = True
    ) -> None:
        argv = ["kinit"]
        if lifetime:
            argv += ["-l", lifetime]
        argv.append(user.principal)
        self.run(
            argv,
            user=user.name if as_user else None,
            env=self.env(KRB5CCNAME=ccache),
            input=user.password + "\n",
        )

    # --- evidence -------------------------------------------------------------------------------
    def kdc_log_offset(self) -> int:
        return self.kdc_log.stat().st_size if self.kdc_log.exists() else 0

    def kdc_log_since(self, offset: int) -> str:
        with open(self.kdc_log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def smb_log_text(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.smb_log_dir.glob("log.*"))
        )


def _live_lab_namespaces() -> list[str]:
    return netns.names("cuplab-")


def reap_stale_labs() -> None:
    """Remove labs whose pytest process died (namespace `cuplab-<pid>` with no such pid)."""
    for name in _live_lab_namespaces():
        pid = name.rsplit("-", 1)[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            netns.delete(name)
            shutil.rmtree(f"/tmp/cifs-upcall-lab-{pid}", ignore_errors=True)


def _as_user(user: str | None, argv: Sequence[str]) -> list[str]:
    if user is None:
        return list(argv)
    pw = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", *argv]


def can_run_lab() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, samba, local users)"
    for tool in ("samba", "samba-tool", "ip", "kinit", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (run scripts/setup.sh)"
    return None


@contextmanager
def running_lab(base: Path, **kw: object) -> Iterator[SambaLab]:
    lab = SambaLab(base=base, **kw)  # type: ignore[arg-type]
    lab.teardown()  # whatever a crashed run left behind
    try:
        lab.provision()
        lab.start()
        yield lab
    finally:
        lab.teardown()
