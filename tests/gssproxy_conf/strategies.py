"""Hypothesis strategies for valid models (valid by construction, so few rejections)."""

from __future__ import annotations

from pathlib import PurePosixPath

from hypothesis import strategies as st

from gssproxy_conf import model as m

label = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
domain = st.lists(label, min_size=1, max_size=3).map(".".join).map(lambda d: d + ".example")
host = st.tuples(label, domain).map(".".join)
realm = domain.map(str.upper)
login = st.from_regex(r"[a-z_][a-z0-9_-]{0,12}", fullmatch=True).filter(lambda s: s != "root")
path_part = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)
abspath = st.lists(path_part, min_size=2, max_size=4).map(lambda ps: PurePosixPath("/", *ps))
sid = st.lists(st.integers(0, 2**32 - 1), min_size=4, max_size=4).map(
    lambda xs: "S-1-5-21-" + "-".join(map(str, xs))
)


def sock(dirname: str) -> st.SearchStrategy[PurePosixPath]:
    return path_part.map(lambda n: PurePosixPath("/run/gp-test", dirname, n + ".sock"))


@st.composite
def configs(draw: st.DrawFn) -> m.Config:
    rlm = draw(realm)
    servers = tuple(draw(st.lists(host, min_size=1, max_size=4, unique=True)))
    impersonate = draw(st.booleans())
    policy = draw(
        st.sampled_from(list(m.Mode) if impersonate else [m.Mode.LOCAL_ONLY, m.Mode.LOCAL_FIRST])
    )
    smb = m.Smb(
        servers,
        impersonate,
        draw(sock("cifs")),
        policy,
        draw(st.integers(1, 60000)),  # min_uid: the helper's parser refuses 0
        draw(st.integers(1, 300)),  # deadline: the helper's parser allows (0, 300]
    )
    names = draw(st.lists(login, max_size=6, unique=True))
    uids = draw(
        st.lists(st.integers(1, 2**32 - 2), min_size=len(names), max_size=len(names), unique=True)
    )
    split = draw(st.integers(0, len(names)))
    # Each protected user's socket is its own (the schema refuses a shared one): drawn unique.
    own = draw(st.lists(sock("prot"), min_size=split, max_size=split, unique=True))
    prot_socks = [s if draw(st.booleans()) else None for s in own]
    protected = tuple(
        m.ProtectedUser(n, u, draw(abspath), draw(st.none() | st.just(f"{n}-p@{rlm}")), s)
        for n, u, s in zip(names[:split], uids[:split], prot_socks, strict=True)
    )
    local = tuple(
        m.LocalUser(n, u, f"{n}.ad@{draw(st.sampled_from([rlm, 'OTHER.ORG']))}")
        for n, u in zip(names[split:], uids[split:], strict=True)
    )
    nfs = draw(
        st.none()
        | st.builds(
            m.Nfs,
            st.booleans(),
            st.none() | sock("nfs"),
            st.lists(host, max_size=2, unique=True).map(tuple),
        )
    )
    automount = None
    if draw(st.booleans()):
        keys = draw(
            st.lists(path_part.filter(lambda k: k[0] != "."), min_size=1, max_size=3, unique=True)
        )
        shares = tuple((k, f"//{draw(st.sampled_from(servers))}/{k}") for k in keys)
        opts = (
            draw(st.sampled_from(["sec=krb5", "sec=krb5i"])),
            *draw(st.lists(st.sampled_from(["vers=3.1.1", "noperm", "seal"]), unique=True)),
        )
        automount = m.Automount(PurePosixPath("/etc/auto.gen"), draw(abspath), shares, opts)
    delegation = draw(st.sampled_from(list(m.Delegation)))
    client = m.Client(
        draw(st.sampled_from(["CLIENT$", f"CLIENT$@{rlm}", "FS-C1$"])),
        draw(abspath),
        draw(sid) if delegation is m.Delegation.RBCD else draw(st.none() | sid),
    )
    helper = m.Helper(
        draw(abspath),
        PurePosixPath("/etc/cifs-upcall/p.yaml"),
        draw(st.none() | abspath),
        tuple(draw(st.lists(st.sampled_from(["-d", "--trust-dns", "-t", "-l"])))),
    )
    ad = m.Ad(
        kdc=draw(st.sampled_from(list(m.KdcFlavor))),
        rbcd_group=draw(st.none() | st.sampled_from(["cifs-upcall-clients", "RBCD Clients"])),
    )
    return m.Config(
        rlm, client, smb, delegation, nfs, protected, local, automount, helper, ad,
        auth_to_local_names=draw(st.booleans()),
        deny_groups=tuple(draw(st.lists(st.sampled_from(["Protected Users", "g1"]), unique=True))),
    )  # fmt: skip
