"""Model -> YAML text in the input schema (the inverse of ``schema``). Optional values that
equal their defaults are left out, so the output is as small as what a person would write."""

from __future__ import annotations

import enum
from dataclasses import MISSING, fields, is_dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml

from .model import Config

# tuple-of-pairs fields that are mappings in YAML
_PAIR_FIELDS = {"shares", "server_accounts", "dns"}
# fields whose schema default depends on other fields (deny_groups on ad.kdc): always written
_ALWAYS = {"deny_groups", "enable"}


def _value(name: str, v: Any) -> Any:
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, PurePosixPath):
        return str(v)
    if is_dataclass(v) and not isinstance(v, type):
        return to_data(v)
    if isinstance(v, tuple):
        if name in _PAIR_FIELDS:
            return {k: _value("", x) for k, x in v}
        return [_value("", x) for x in v]
    return v


def to_data(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if f.name in _ALWAYS:
            out[f.name] = _value(f.name, v)
            continue
        if f.default is not MISSING and v == f.default:
            continue
        if f.default_factory is not MISSING and v == f.default_factory():
            continue
        out[f.name] = _value(f.name, v)
    return out


def dump(c: Config) -> str:
    return yaml.safe_dump(to_data(c), sort_keys=False, default_flow_style=False, width=100)
