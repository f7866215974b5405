"""Reading a spec file as the CLI and ``infrakit up`` do: text, template, JSON or YAML.

:func:`read_spec_file` reads the file (``-`` = standard input; the checks of
:func:`infrakit._utils.jsonfile.read_text_file`), renders it when it is a template (vars from
``--var``, then ``--vars-file``, then the spec's own ``Vars`` section, the first given winning),
parses the result as JSON or YAML and drops ``Vars`` from it. :func:`parse_vars` checks ``--var``
and ``--vars-file``. Every refusal is a :class:`~infrakit.errors.SpecError` of one line naming
the file (and line and column where there is one).

The ``Vars`` section of a template is read before rendering: from the file parsed as it is when
that works (a JSON template whose ``{{ }}`` are inside strings), else from the text of the section
alone - a top-level YAML ``Vars:`` block, or a JSON ``"Vars": {...}`` object. Its values are
literal (not rendered).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infrakit._utils.jsonfile import JsonFileError, read_text_file
from infrakit.errors import SpecError
from infrakit.specfile.documents import Document, YamlError, load_text, load_yaml
from infrakit.specfile.template import DEFERRED_CONTEXT, has_template_syntax, render

__all__ = ["SpecFile", "parse_vars", "read_document", "read_spec_file"]


@dataclass
class SpecFile:
    """A spec file read: where from, its document and, for a template, the rendered text."""

    label: str
    document: Document
    #: The text after rendering (None: the file was not a template).
    rendered: str | None = None

    @property
    def value(self) -> Any:
        return self.document.value

    @property
    def is_template(self) -> bool:
        return self.rendered is not None

    def where(self, path: tuple[str, ...]) -> str:
        """``FILE:LINE:COL`` of the key at ``path`` (``FILE (rendered):...`` for a template,
        whose lines are the rendered text's), or ``FILE`` when unknown."""
        place = self.document.position(path)
        label = f"{self.label} (rendered)" if self.is_template else self.label
        return f"{label}:{place[0]}:{place[1]}" if place else label


def read_document(path: str, what: str, limit: int) -> Document:
    """A JSON or YAML file (no template), e.g. ``--vars-file`` or a properties file."""
    try:
        text, label = read_text_file(path, what, limit)
        return load_text(text, what, label)
    except JsonFileError as exc:
        raise SpecError(str(exc)) from None


def read_spec_file(
    path: str, what: str, limit: int, variables: Mapping[str, Any] | None = None
) -> SpecFile:
    """Read, render (when a template) and parse the spec file ``path`` (module docstring)."""
    try:
        text, label = read_text_file(path, what, limit)
    except JsonFileError as exc:
        raise SpecError(str(exc)) from None
    if not has_template_syntax(text):
        return SpecFile(label, _without_vars(_load(text, what, label)))
    merged = {**_vars_section(text, what, label), **(variables or {})}
    root = None if path == "-" else Path(os.path.dirname(os.path.abspath(path)))
    rendered = render(text, name=label, root=root, variables=merged, context=DEFERRED_CONTEXT)
    try:
        document = load_text(rendered, what, f"{label} (rendered)")
    except JsonFileError as exc:
        raise SpecError(
            f"{exc}; see the rendered text with `infrakit template render {label}`"
        ) from None
    return SpecFile(label, _without_vars(document), rendered)


def _load(text: str, what: str, label: str) -> Document:
    try:
        return load_text(text, what, label)
    except JsonFileError as exc:
        raise SpecError(str(exc)) from None


def _without_vars(document: Document) -> Document:
    value = document.value
    if isinstance(value, dict):
        document.value = {k: v for k, v in value.items() if not _is_vars_key(k)}
    return document


def _is_vars_key(key: object) -> bool:
    return isinstance(key, str) and key.lower() == "vars"


# --- vars ------------------------------------------------------------------------------------


def parse_vars(pairs: Iterable[str], files: Iterable[str], limit: int) -> dict[str, Any]:
    """``--var KEY=VALUE`` (strings; repeatable) over ``--vars-file FILE`` (a JSON or YAML map;
    repeatable, later files win)."""
    out: dict[str, Any] = {}
    for file in files:
        value = read_document(file, "vars file", limit).value
        if not isinstance(value, dict):
            raise SpecError(
                f"vars file {file}: expected a map of names to values (e.g. region: eu-west-1), "
                f"got {type(value).__name__}"
            )
        out.update(value)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--var {pair!r}: expected KEY=VALUE, e.g. --var region=eu-west-1")
        out[key.strip()] = value
    return out


_YAML_VARS = re.compile(
    r"^(?:Vars|vars|VARS):[ \t]*(?:#.*)?$|^(?:Vars|vars|VARS):[ \t]*\{.*\}[ \t]*$"
)
_JSON_VARS = re.compile(r'"[Vv][Aa][Rr][Ss]"\s*:\s*\{')


def _vars_section(text: str, what: str, label: str) -> dict[str, Any]:
    """The ``Vars`` map of a template, read before rendering (module docstring)."""
    section: Any = None
    try:
        raw = load_text(text, what, label).value
    except (JsonFileError, SpecError):
        section = _vars_text(text)
    else:
        if isinstance(raw, dict):
            section = next((v for k, v in raw.items() if _is_vars_key(k)), None)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise SpecError(
            f"{what} {label}: Vars must be a map of names to values (e.g. Vars: {{region: "
            f"eu-west-1}}), got {type(section).__name__}"
        )
    return section


def _vars_text(text: str) -> Any:
    """The Vars section cut out of template text that does not parse as it is."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _YAML_VARS.match(line):
            block = [line]
            for follow in lines[i + 1 :]:
                if follow.strip() and not follow[:1].isspace():
                    break
                block.append(follow)
            try:
                value = load_yaml("\n".join(block))
            except YamlError:
                return None
            return next(iter(value.values()), None) if isinstance(value, dict) else None
    match = _JSON_VARS.search(text)
    if match is None:
        return None
    start = match.end() - 1
    end = _closing_brace(text, start)
    if end is None:
        return None
    try:
        return json.loads(text[start : end + 1])
    except ValueError:
        return None


def _closing_brace(text: str, start: int) -> int | None:
    """The index of the ``}`` closing the ``{`` at ``start`` (strings skipped)."""
    depth = 0
    in_string = False
    escaped = False
    for i in range(start, len(text)):
        char = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
    return None
