"""Pure parts of the proxy path: gssproxy minor codes (offset 0x04200000), krb5.conf facts."""

from __future__ import annotations

import errno

import pytest

from upcall.errors import Reason
from upcall.krb5.classify import PROXY_BASE, ProxyPhase, classify_proxy, proxy_code
from upcall.krb5.profile import parse_lines

ACQ, INIT = ProxyPhase.ACQUIRE, ProxyPhase.INIT


@pytest.mark.parametrize(
    ("err", "reason"),
    [
        (errno.ENOENT, Reason.PROXY_UNAVAILABLE),
        (errno.ECONNREFUSED, Reason.PROXY_UNAVAILABLE),
        (errno.EIO, Reason.PROXY_NO_SERVICE),
        (errno.ETIMEDOUT, Reason.DEADLINE),
    ],
)
def test_transport_errnos(err: int, reason: Reason) -> None:
    assert proxy_code(PROXY_BASE + err) == (True, err)
    for phase in ProxyPhase:
        assert classify_proxy(PROXY_BASE + err, phase=phase, who="alice").reason is reason


@pytest.mark.parametrize(
    ("minor", "phase", "reason"),
    [
        (2598844941, INIT, Reason.S4U2PROXY_REFUSED),  # seen: KDC_ERR_BADOPTION at S4U2Proxy
        (2598844940, ACQ, Reason.S4U2SELF_REFUSED),  # seen: KDC_ERR_POLICY (disabled account)
        (2598844934, ACQ, Reason.S4U2SELF_REFUSED),  # seen: C_PRINCIPAL_UNKNOWN
        (2598845084, ACQ, Reason.KDC_UNREACHABLE),  # seen: cannot contact any KDC
        (PROXY_BASE + 2529638949, INIT, Reason.CLOCK_SKEW),  # KRB_AP_ERR_SKEW
        (PROXY_BASE + 2529638919, INIT, Reason.UNKNOWN_SERVER),  # S_PRINCIPAL_UNKNOWN
        (PROXY_BASE + 123456789, INIT, Reason.GSS_FAILURE),
        (0, ACQ, Reason.GSS_FAILURE),
    ],
)
def test_krb5_codes_through_the_proxy(minor: int, phase: ProxyPhase, reason: Reason) -> None:
    c = classify_proxy(minor, phase=phase, who="alice@R", spn="cifs/fs")
    assert c.reason is reason
    assert "{" not in c.hint


def test_s4u2proxy_hint_names_both_causes() -> None:
    hint = classify_proxy(2598844941, phase=INIT, who="erin@R", spn="cifs/fs").hint
    assert "erin@R" in hint and "cifs/fs" in hint and "Protected Users" in hint
    assert "msDS-AllowedToActOnBehalfOfOtherIdentity" in hint


@pytest.mark.parametrize(
    ("minor", "phase", "own", "impersonating"),
    [
        # seen on an own-keytab socket: no key for the user in the client_keytab (missing file,
        # another user's keytab) -> gssproxy falls back to its store ccache: FCC_NOFILE
        (2598845123, ACQ, Reason.KEYTAB, Reason.NO_CREDENTIALS),
        (2598844952, ACQ, Reason.KEYTAB, Reason.KEYTAB),  # seen: PREAUTH_FAILED, stale keytab
        # KDC refusals of the user's own AS/TGS requests are not S4U refusals there
        (2598844940, ACQ, Reason.KDC_REFUSED, Reason.S4U2SELF_REFUSED),  # KDC_ERR_POLICY
        (2598844946, ACQ, Reason.KDC_REFUSED, Reason.S4U2SELF_REFUSED),  # CLIENT_REVOKED
        (2598844941, INIT, Reason.KDC_REFUSED, Reason.S4U2PROXY_REFUSED),  # BADOPTION
        (PROXY_BASE + 2529638919, INIT, Reason.UNKNOWN_SERVER, Reason.UNKNOWN_SERVER),
        (PROXY_BASE + errno.EIO, ACQ, Reason.PROXY_NO_SERVICE, Reason.PROXY_NO_SERVICE),
    ],
)
def test_own_keytab_socket_failures(
    minor: int, phase: ProxyPhase, own: Reason, impersonating: Reason
) -> None:
    c = classify_proxy(minor, phase=phase, who="erin@R", spn="cifs/fs", impersonation=False)
    assert c.reason is own and "{" not in c.hint
    if own is Reason.KEYTAB:
        assert "erin@R" in c.hint and "client_keytab" in c.hint
    assert classify_proxy(minor, phase=phase, who="erin@R").reason is impersonating


KRB5_CONF = """\
# comment
[libdefaults]
\tdefault_realm = LAB.TEST
\tdns_lookup_kdc = false
[realms]
\tLAB.TEST = {
\t\tkdc = 127.0.0.10
\t\tdefault_realm = NOT.THIS
\t}
[domain_realm]
\t.lab.test = LAB.TEST
\tlab.test = LAB.TEST
\tspecial.lab.test = OTHER.TEST
\t.corp.example = CORP.EXAMPLE
"""


def test_krb5_profile_facts() -> None:
    f = parse_lines(KRB5_CONF.splitlines())
    assert f.default_realm == "LAB.TEST"
    assert f.host_realm("dc1.lab.test") == "LAB.TEST"
    assert f.host_realm("SPECIAL.lab.test.") == "OTHER.TEST"
    assert f.host_realm("fs.a.corp.example") == "CORP.EXAMPLE"
    assert f.host_realm("elsewhere.org") == "LAB.TEST"  # MIT falls back to the default realm
    assert parse_lines([]).host_realm("x") is None
