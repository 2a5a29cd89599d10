"""Property tests: any valid model survives YAML and survives rendering."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings

from gssproxy_conf import schema, serialize
from gssproxy_conf.ad import changes, directory, ldif
from gssproxy_conf.ad import security_descriptor as sd
from gssproxy_conf.install import plan
from gssproxy_conf.install.marker import strip
from gssproxy_conf.lint.check import lint
from gssproxy_conf.model import Config, Delegation

from .readback import project, readback
from .strategies import configs

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(configs())
def test_yaml_round_trip(c: Config) -> None:
    assert schema.load(serialize.dump(c)) == c


@SETTINGS
@given(configs())
def test_rendered_files_read_back_to_the_model(c: Config) -> None:
    p = plan.build(c)
    assert readback(p, c.helper.policy) == project(c)


@SETTINGS
@given(configs())
def test_rendered_gssproxy_config_lints_clean(c: Config) -> None:
    p = plan.build(c)
    snippets = [
        (str(f.path), strip(f.content)) for f in p.files if str(f.path).startswith("/etc/gssproxy/")
    ]
    assert lint(("gssproxy.conf", "[gssproxy]\n"), snippets) == []


@SETTINGS
@given(configs())
def test_ldif_reads_back_to_the_changes(c: Config) -> None:
    """Against a directory where nothing is set yet, every change becomes one record; against
    the directory those records produce, none."""
    cs = changes.change_set([c])
    sid = iter(range(2000, 3000))
    empty = directory.Directory(
        {
            a.lower(): directory.Entry(f"CN={a},DC=x", a, f"S-1-5-21-1-2-3-{next(sid)}", 0)
            for a in cs.accounts()
        }
    )
    mods = ldif.parse(ldif.render(cs, empty, c.base_dn))
    want = [ch for ch in cs.changes if not isinstance(ch, changes.EnsureGroup)]
    assert len(mods) == len(want)
    after = dict(empty.entries)
    for mod, ch in zip(mods, want, strict=True):
        if isinstance(ch, changes.SetUacBits):
            assert mod.op == "replace" and int(mod.values[0]) == ch.bits
            e = after[ch.account.lower()]
            after[ch.account.lower()] = dataclasses.replace(e, uac=int(mod.values[0]))
        elif isinstance(ch, changes.AddDelegateTo):
            assert mod.op == "add" and [v.decode() for v in mod.values] == list(ch.spns)
            assert c.delegation is Delegation.PROTOCOL_TRANSITION
            e = after[ch.account.lower()]
            after[ch.account.lower()] = dataclasses.replace(e, delegate_to=ch.spns)
        elif isinstance(ch, changes.AddMember):
            assert mod.op == "add" and mod.attr == "member"
            e = after[ch.group.lower()]
            after[ch.group.lower()] = dataclasses.replace(e, members=(mod.values[0].decode(),))
        else:
            assert isinstance(ch, changes.AddRbcdTrustee) and mod.op == "replace"
            desc = sd.decode(mod.values[0])
            assert [a.sid for a in desc.dacl] == [empty.entries[ch.trustee.lower()].sid]
            e = after[ch.account.lower()]
            after[ch.account.lower()] = dataclasses.replace(e, rbcd=desc)
    again = ldif.parse(ldif.render(cs, directory.Directory(after), c.base_dn))
    assert again == []
