"""YAML to plain data plus the line of every key and list item.

libyaml (through PyYAML's C composer) does the parsing, which keeps a 1,000-node
site well under a second. Scalars are then resolved with the YAML 1.2 core schema
ourselves, because PyYAML follows YAML 1.1, where a MAC such as 52:54:00:00:00:01
is a base-60 number and the keyboard layout `no` is false.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """libyaml's composer without PyYAML's YAML 1.1 tag resolution: _scalar resolves."""

    _TAGS = {yaml.ScalarNode: "tag:yaml.org,2002:str", yaml.SequenceNode: "tag:yaml.org,2002:seq",
             yaml.MappingNode: "tag:yaml.org,2002:map"}

    def resolve(self, kind, value, implicit):
        return self._TAGS[kind]


_NULL = re.compile(r"^(~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?[0-9]+$")
_OCT = re.compile(r"^0o[0-7]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_STANDARD_TAG = "tag:yaml.org,2002:"
MAX_DEPTH = 50
# values built from one document: a 1,000-node site has about 15,000; aliases that refer to
# aliases (a "billion laughs" file) would otherwise expand a few hundred bytes into gigabytes
MAX_VALUES = 50_000


class YamlError(Exception):
    """Invalid YAML, with the 1-based line and column where known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


@dataclass
class Parsed:
    data: Any
    lines: dict[tuple, int]  # location tuple -> 1-based line of that key or item
    nodes: dict[tuple, Any]  # location tuple -> the YAML node (for edits that keep the text)
    built: int = 0  # values built so far (MAX_VALUES)

    def line(self, loc: tuple) -> int | None:
        """Line of the deepest part of `loc` present in the document."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None


def parse(text: str) -> Parsed:
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(x for x in (exc.context, exc.problem) if x) or "invalid YAML"
        raise YamlError(what, mark.line + 1 if mark else None, mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YamlError(str(exc).splitlines()[0] if str(exc) else "invalid YAML") from None
    if root is None:
        return Parsed(None, {(): 1}, {})
    parsed = Parsed(None, {(): root.start_mark.line + 1}, {(): root})
    parsed.data = _build(root, (), parsed, frozenset())
    return parsed


def _build(node: yaml.Node, loc: tuple, out: Parsed, path: frozenset[int]) -> Any:
    if len(loc) > MAX_DEPTH or id(node) in path:
        raise YamlError("the document nests too deeply or refers to itself", node.start_mark.line + 1)
    out.built += 1
    if out.built > MAX_VALUES:
        raise YamlError(f"the document expands to more than {MAX_VALUES:,} values (aliases that repeat "
                        "aliases?): a site file is far smaller", node.start_mark.line + 1)
    path = path | {id(node)}
    if isinstance(node, yaml.MappingNode):
        result: dict = {}
        for key_node, value_node in node.value:
            key = _build(key_node, loc, out, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, (str, int, bool)) or key is None:
                key = str(key) if isinstance(key_node, yaml.ScalarNode) else "<complex key>"
            if key in result:
                raise YamlError(f"duplicate key '{key}': each key may appear only once",
                                key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out.lines[loc + (key,)] = key_node.start_mark.line + 1
            out.nodes[loc + (key,)] = value_node
            result[key] = _build(value_node, loc + (key,), out, path)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            out.lines[loc + (i,)] = item.start_mark.line + 1
            out.nodes[loc + (i,)] = item
            items.append(_build(item, loc + (i,), out, path))
        return items
    return _scalar(node)


def _scalar(node: yaml.ScalarNode) -> Any:
    value = node.value
    if node.style not in (None, "") or not node.tag.startswith(_STANDARD_TAG):
        return value  # quoted, block or custom-tagged scalars stay text
    if _NULL.match(value):
        return None
    if value in _BOOL:
        return _BOOL[value]
    if _INT.match(value):
        return int(value)
    if _OCT.match(value):
        return int(value[2:], 8)
    if _HEX.match(value):
        return int(value[2:], 16)
    if _FLOAT.match(value):
        return float(value)
    return value
