"""Property tests: any valid model survives YAML and survives rendering."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from gssproxy_conf import plan, schema, serialize
from gssproxy_conf.ad import changes, ldif
from gssproxy_conf.ad import security_descriptor as sd
from gssproxy_conf.check import lint
from gssproxy_conf.marker import strip
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
    mods = ldif.parse(ldif.render(c))
    want = changes.plan(c)
    assert len(mods) == len(want)
    for mod, ch in zip(mods, want, strict=True):
        assert mod.dn == ch.dn and mod.op == "replace"
        if isinstance(ch, changes.SetUacFlag):
            assert int(mod.values[0]) & ch.flag
        elif isinstance(ch, changes.SetAllowedToDelegateTo):
            assert [v.decode() for v in mod.values] == list(ch.spns)
            assert c.delegation is Delegation.PROTOCOL_TRANSITION
        else:
            assert sd.decode(mod.values[0]) == ch.descriptor
            assert ch.descriptor.dacl[0].sid == c.client.sid
