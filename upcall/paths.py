"""Where the installed helper and its files live: one owner for each path the generator,
doctor and the packaging render or check. Pure; imports nothing (the thin client uses it)."""

HELPER_PATH = "/usr/sbin/cifs-upcall"  # what debian/ installs and request-key runs
REQUEST_KEY_FILE = "/etc/request-key.d/cifs-upcall.conf"  # ours, beside cifs-utils' file
CIFS_UTILS_REQUEST_KEY_FILE = "/etc/request-key.d/cifs.spnego.conf"  # never touched
DAEMON_SOCKET = "/run/cifs-upcall/upcall.sock"  # cifs-upcall.socket; root-only directory
POLICY_FILE = "/etc/cifs-upcall/policy.yaml"


def request_key_line(helper: str = HELPER_PATH, args: tuple[str, ...] = ()) -> str:
    """Our request-key rule: `ver=0x2;*` beats cifs-utils' `* *` by request-key's best
    match whatever the file order (every kernel description starts with ver=0x2;)."""
    return " ".join(["create cifs.spnego ver=0x2;* *", helper, *args, "%k"])
