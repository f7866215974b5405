"""JSON or YAML text -> a JSON value, with the line and column of every key; and back to YAML.

Which format is decided by content, not by the file name: text whose first character (after
blanks and comments-free whitespace) is ``{`` or ``[`` is JSON, parsed by the standard library
exactly as before (its errors name line and column); anything else is YAML. A ``.json`` file that
is not JSON is reported as JSON.

YAML is read as **YAML 1.2 with JSON-compatible values only**, with PyYAML's parser (libyaml's
when present) but neither of its constructors:

* scalars resolve by the YAML 1.2 core schema - ``true``/``false`` (not ``yes``/``on``: Norway's
  ``NO`` stays a string), ``null``/``~``/empty, decimal, ``0o`` octal and ``0x`` hex integers
  (``010`` is ten, ``1:30`` a string), floats; timestamps stay strings;
* the only tags allowed are the core ones (``!!str``, ``!!int``, ``!!float``, ``!!bool``,
  ``!!null``, ``!!map``, ``!!seq``): ``!!python/object``, ``!!binary``, ``!!set``, ``!!timestamp``
  and custom ``!tags`` are refused, so no tag can build an object;
* keys are strings (``1:`` or ``true:`` as a key is refused: quote it) and appear once;
* ``.inf`` and ``.nan`` are refused (JSON has no such numbers);
* anchors and aliases work, but a document whose aliases expand to more than
  :data:`MAX_VALUES` values (a "billion laughs") is refused;
* one document per file.

Why PyYAML restricted this way and not ruamel.yaml: PyYAML is stable, small and ships libyaml's C
parser in its wheels (a 16 MiB spec parses in well under a second); ruamel's safe loader also
builds ``datetime``/``set`` objects and changes API between minor releases. Building the values
here, from the node tree, is what makes the 1.2 rules and the JSON-only rule hold: no constructor
of PyYAML's ever runs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml import nodes as ynodes

from infrakit._utils.jsonfile import JsonFileError, parse_json_text
from infrakit._utils.nesting import MAX_DEPTH

__all__ = [
    "MAX_VALUES",
    "Document",
    "Position",
    "dump_yaml",
    "is_json_text",
    "load_text",
    "load_yaml",
    "positions_of",
]

#: The most values (scalars, lists, maps) a YAML document may expand to through its aliases.
MAX_VALUES = 1_000_000

#: A key's place in its file: (line, column), both from 1.
Position = tuple[int, int]
#: A value's path in the document: keys lowercased (matched as Go matches them), indexes as text.
Path = tuple[str, ...]

_CORE = "tag:yaml.org,2002:"
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class _Resolver(yaml.resolver.BaseResolver):
    """The YAML 1.2 core schema's implicit types (PyYAML's default resolver is YAML 1.1's)."""


for _tag, _pattern, _first in (
    ("null", _NULL, ["~", "n", "N", ""]),
    ("bool", _BOOL, list("tTfF")),
    ("int", _INT, list("-+0123456789")),
    ("float", _FLOAT, list("-+0123456789.")),
):
    _Resolver.add_implicit_resolver(_CORE + _tag, _pattern, _first)


class _PurePython(
    yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer, _Resolver
):
    """PyYAML's pure-Python parser and composer with the 1.2 resolver."""

    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Resolver.__init__(self)


_composer: Callable[[str], Any] = _PurePython
if getattr(yaml, "__with_libyaml__", False):  # libyaml's C parser: the same nodes, faster
    from yaml._yaml import CParser

    class _Fast(CParser, _Resolver):
        """libyaml's parser and composer with the 1.2 resolver."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _Resolver.__init__(self)

    _composer = _Fast


class YamlError(ValueError):
    """Text that is not a YAML document infrakit accepts; ``line``/``column`` from 1."""

    def __init__(self, problem: str, line: int, column: int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line
        self.column = column


@dataclass
class Document:
    """A parsed spec file: its value and, on request, where each key was written."""

    value: Any
    text: str
    format: str  # "json" or "yaml"
    _positions: dict[Path, Position] | None = field(default=None, repr=False)

    def position(self, path: Path) -> Position | None:
        """Where the key (or item) at ``path`` was written, or its closest parent's place."""
        if self._positions is None:
            self._positions = positions_of(self.text)
        probe = tuple(p.lower() for p in path)
        while probe:
            found = self._positions.get(probe)
            if found is not None:
                return found
            probe = probe[:-1]
        return None


def is_json_text(text: str) -> bool:
    """True when ``text`` is meant as JSON: its first non-blank character opens an object or a
    list (a YAML document starts with a key, ``-`` or ``---``)."""
    stripped = text.lstrip(" \t\r\n\ufeff")
    return stripped[:1] in ("{", "[")


def load_text(text: str, what: str, label: str) -> Document:
    """Parse ``text`` (JSON or YAML, by content) read from ``label``; raise
    :class:`~infrakit._utils.jsonfile.JsonFileError` with one line naming ``label:line:col``."""
    if is_json_text(text) or label.endswith(".json"):
        return Document(parse_json_text(text, what, label), text, "json")
    try:
        value = load_yaml(text)
    except YamlError as exc:
        raise JsonFileError(
            f"{what} {label}:{exc.line}:{exc.column}: not valid YAML ({exc.problem}); fix the "
            "file and try again"
        ) from None
    return Document(value, text, "yaml")


def load_yaml(text: str) -> Any:
    """The JSON value of the one YAML 1.2 document in ``text`` (module docstring's rules)."""
    node = _compose(text)
    if node is None:
        return None
    return _Builder().value(node, 0)


def _compose(text: str) -> ynodes.Node | None:
    composer = _composer(text)
    try:
        node: ynodes.Node | None = composer.get_single_node()
        return node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise YamlError(problem, line, col) from None
    except yaml.YAMLError as exc:
        raise YamlError(str(exc), 1, 1) from None
    except RecursionError:
        raise YamlError(
            f"nested deeper than {MAX_DEPTH} levels (the limit for specs)", 1, 1
        ) from None
    finally:
        composer.dispose()


def _where(node: ynodes.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    """Builds JSON values from YAML nodes, counting what aliases expand to."""

    def __init__(self) -> None:
        self.count = 0

    def value(self, node: ynodes.Node, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise YamlError(
                f"nested deeper than {MAX_DEPTH} levels (the limit for specs)", *_where(node)
            )
        self.count += 1
        if self.count > MAX_VALUES:
            raise YamlError(
                f"its aliases expand to more than {MAX_VALUES} values (a YAML bomb?); write the "
                "values out or use fewer aliases",
                *_where(node),
            )
        if isinstance(node, ynodes.MappingNode):
            return self._mapping(node, depth)
        if isinstance(node, ynodes.SequenceNode):
            _check_tag(node, "seq")
            return [self.value(item, depth + 1) for item in node.value]
        assert isinstance(node, ynodes.ScalarNode)
        return _scalar(node)

    def _mapping(self, node: ynodes.MappingNode, depth: int) -> dict[str, Any]:
        _check_tag(node, "map")
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ynodes.ScalarNode):
                raise YamlError(
                    "a key must be a plain string, not a list or a map", *_where(key_node)
                )
            key = _scalar(key_node)
            if not isinstance(key, str):
                kind = {bool: "a boolean", int: "a number", float: "a number"}.get(
                    type(key), "null"
                )
                raise YamlError(
                    f"key {key_node.value!r} reads as {kind}, but keys are strings; quote it: "
                    f'"{key_node.value}"',
                    *_where(key_node),
                )
            if key in out:
                raise YamlError(
                    f"key {key!r} appears twice in one map; keep one", *_where(key_node)
                )
            out[key] = self.value(value_node, depth + 1)
        return out


_ALLOWED_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "map", "seq")}


def _check_tag(node: ynodes.Node, kind: str) -> None:
    if node.tag != _CORE + kind:
        raise YamlError(
            f"tag {_short_tag(node.tag)} is not allowed: a spec holds JSON values only "
            "(strings, numbers, booleans, null, lists, maps); remove the tag",
            *_where(node),
        )


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


def _scalar(node: ynodes.ScalarNode) -> Any:
    tag = node.tag
    text = node.value
    if tag not in _ALLOWED_TAGS or tag in (_CORE + "map", _CORE + "seq"):
        _check_tag(node, "str")  # raises: an object-building or unknown tag
    kind = tag[len(_CORE) :]
    try:
        if kind == "str":
            return text
        if kind == "null":
            if not _NULL.match(text):
                raise ValueError(text)
            return None
        if kind == "bool":
            if not _BOOL.match(text):
                raise ValueError(text)
            return text.lower() == "true"
        if kind == "int":
            return _int(text)
        special = text.lstrip("+-").lower() in (".inf", ".nan")
        number = math.inf if special else float(text)
    except ValueError:
        raise YamlError(f"{text!r} is not a valid {kind}", *_where(node)) from None
    if math.isinf(number) or math.isnan(number):  # 1e999 too
        raise YamlError(
            f"{text!r}: JSON has no infinity or NaN; use a number or a string", *_where(node)
        )
    return number


def _int(text: str) -> int:
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


# --- positions ---------------------------------------------------------------------------------


def positions_of(text: str) -> dict[Path, Position]:
    """Where each key and list item of ``text`` (JSON or YAML) was written, by lowercased path;
    empty when the text does not parse as YAML (JSON with tabs, say): positions are a help, not
    a requirement."""
    try:
        node = _compose(text)
    except YamlError:
        return {}
    out: dict[Path, Position] = {}
    if node is not None:
        for path, where in _walk(node, ()):
            out.setdefault(path, where)
    return out


def _walk(node: ynodes.Node, path: Path) -> Iterator[tuple[Path, Position]]:
    stack: list[tuple[ynodes.Node, Path]] = [(node, path)]
    seen: set[int] = set()
    while stack:
        current, here = stack.pop()
        if id(current) in seen or len(here) > MAX_DEPTH:
            continue
        seen.add(id(current))
        if isinstance(current, ynodes.MappingNode):
            for key_node, value_node in current.value:
                sub = (*here, str(key_node.value).lower())
                yield sub, _where(key_node)
                stack.append((value_node, sub))
        elif isinstance(current, ynodes.SequenceNode):
            for i, item in enumerate(current.value):
                sub = (*here, str(i))
                yield sub, _where(item)
                stack.append((item, sub))


# --- YAML out ----------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block-style YAML whose strings read back as strings under YAML 1.1 *and* 1.2 rules."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    resolved = _Resolver().resolve(ynodes.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    if resolved != _CORE + "str":
        return dumper.represent_scalar(_CORE + "str", value, style="'")
    if "\n" in value:
        return dumper.represent_scalar(_CORE + "str", value, style="|")
    return dumper.represent_scalar(_CORE + "str", value)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(value: Any) -> str:
    """``value`` (a JSON value) as block-style YAML, keys in their order."""
    return yaml.dump(
        value,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )


def dump_json(value: Any) -> str:
    """``value`` as indented JSON (the CLI's ``-o json``)."""
    return json.dumps(value, indent=2)
