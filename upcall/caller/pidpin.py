"""Pin the process behind the kernel's pid= with a pidfd. Root, host namespaces (the thin client
and the parent). Imports only posix (not os: ~1 ms less for the thin client, which uses it
before handing the pidfd on; errno is built in).

The kernel sends current->pid, a thread id; pidfd_open(2) wants a thread-group leader, so the
thread is resolved to its process first and checked to still belong to it once pinned.
"""

import errno
import posix


class PinError(Exception):
    """The caller cannot be pinned (gone, or its /proc entry unreadable)."""


def _status_field(pid: int, name: str) -> str:
    prefix = name + ":"
    with open(f"/proc/{pid}/status") as f:
        for line in f.read(65536).splitlines():
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
    raise PinError(f"caller pid {pid}: no {name} in its status")


def thread_group(tid: int) -> int:
    """The process (Tgid) of a thread id. PinError."""
    try:
        return int(_status_field(tid, "Tgid"))
    except FileNotFoundError:
        raise PinError(f"caller pid {tid} does not exist") from None
    except (OSError, ValueError) as e:
        raise PinError(f"caller pid {tid}: unreadable status ({e})") from None


def _exists(path: str) -> bool:
    try:
        posix.stat(path)
    except OSError:
        return False
    return True


def pin(pid: int) -> tuple[int, int]:
    """(pidfd, process id) for the kernel's pid=; the caller closes the pidfd. A process's
    own pid (the usual case) pins at once; a thread's (not a thread-group leader: EINVAL on
    older kernels, ENOENT on this 6.18) goes through its Tgid."""
    try:
        return posix.pidfd_open(pid), pid
    except OSError as e:
        if e.errno == errno.ESRCH:
            raise PinError(f"caller pid {pid} does not exist") from None
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise PinError(f"caller pid {pid}: {e.strerror}") from None
    tgid = thread_group(pid)
    try:
        fd = posix.pidfd_open(tgid)
    except OSError as e:
        raise PinError(f"caller pid {tgid}: {e.strerror}") from None
    if tgid != pid and not _exists(f"/proc/{tgid}/task/{pid}"):
        posix.close(fd)
        raise PinError(f"thread {pid} is no longer part of process {tgid}")
    return fd, tgid


def fd_pid(pidfd: int) -> int:
    """The pid (in our pid namespace) a pidfd refers to, from /proc/self/fdinfo; -1 if the
    process has exited."""
    try:
        with open(f"/proc/self/fdinfo/{pidfd}") as f:
            for line in f:
                if line.startswith("Pid:"):
                    return int(line[4:].strip())
    except (OSError, ValueError):
        pass
    raise PinError(f"fd {pidfd} is not a pidfd")
