"""Load YAML into a small tree of nodes that remember where they came from.

PyYAML's compose API keeps marks on nodes; plain ``safe_load`` throws them away. We compose,
then convert scalars with the safe constructor, so ``schema`` can report ``file:line``. Duplicate
mapping keys are an error here (PyYAML would silently keep the last one).
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from .errors import Code, ConfigError, Location, Problem

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class YScalar:
    value: Scalar
    loc: Location
    tag: str  # resolved YAML tag, e.g. "tag:yaml.org,2002:int"


@dataclass(frozen=True)
class YSeq:
    items: tuple[YNode, ...]
    loc: Location


@dataclass(frozen=True)
class YMap:
    # key -> (location of the key, value node); insertion order is file order
    entries: dict[str, tuple[Location, YNode]]
    loc: Location


YNode = YScalar | YSeq | YMap


def _loc(path: str, node: yaml.Node) -> Location:
    return Location(path, node.start_mark.line + 1, node.start_mark.column + 1)


class _Ctx:
    """What the recursive conversion needs: the file name, a constructor, the problems found."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.constructor = yaml.SafeLoader("")  # used only for its scalar constructors
        self.problems: list[Problem] = []


def _convert(ctx: _Ctx, node: yaml.Node) -> YNode:
    path, problems = ctx.path, ctx.problems
    if isinstance(node, yaml.ScalarNode):
        try:
            obj = ctx.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            problems.append(Problem(Code.YAML_SYNTAX, str(exc.problem), _loc(path, node)))
            obj = None
        if not isinstance(obj, (str, int, float, bool)) and obj is not None:
            # timestamps, binary, ...: keep the source text; the schema decides
            obj = str(node.value)
        return YScalar(obj, _loc(path, node), node.tag)
    if isinstance(node, yaml.SequenceNode):
        return YSeq(tuple(_convert(ctx, n) for n in node.value), _loc(path, node))
    if isinstance(node, yaml.MappingNode):
        entries: dict[str, tuple[Location, YNode]] = {}
        for key_node, value_node in node.value:
            key_loc = _loc(path, key_node)
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(
                    Problem(Code.BAD_TYPE, "mapping keys must be plain strings", key_loc)
                )
                continue
            key = str(key_node.value)
            if key in entries:
                first = entries[key][0]
                problems.append(
                    Problem(
                        Code.YAML_SYNTAX,
                        f"duplicate key {key!r} (first at line {first.line})",
                        key_loc,
                    )
                )
                continue
            entries[key] = (key_loc, _convert(ctx, value_node))
        return YMap(entries, _loc(path, node))
    raise AssertionError(f"unexpected YAML node {node!r}")  # pragma: no cover - PyYAML has 3 kinds


def load_text(text: str, path: str = "<string>") -> YNode:
    """Parse ``text``; raise ``ConfigError`` with file:line on any syntax problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else None
        raise ConfigError([Problem(Code.YAML_SYNTAX, str(exc.problem or exc), loc)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(Code.YAML_SYNTAX, str(exc), Location(path, 1))]) from None
    if root is None:
        raise ConfigError([Problem(Code.MISSING_KEY, "the file is empty", Location(path, 1))])
    ctx = _Ctx(path)
    try:
        tree = _convert(ctx, root)
    finally:
        ctx.constructor.dispose()
    if ctx.problems:
        raise ConfigError(ctx.problems)
    return tree
