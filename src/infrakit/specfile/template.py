"""Spec templates: Jinja2 in an immutable sandbox, with InfraKit HEAD's functions.

A template is any text with ``{{`` or ``{%``; text without them is used verbatim (Go specs and
Init lines keep their meaning). In shell templates (a flavor's Init), comments are ``{## ##}``:
``{#`` is shell's ``${#var}``. Rendering uses Jinja2's ``ImmutableSandboxedEnvironment``
with ``StrictUndefined``, ``trim_blocks`` and ``lstrip_blocks``. Names a template sees:

======================  ===========================================================================
``var("a/b")``          a var (``--var``, ``--vars-file``, the spec's ``Vars``); ``/`` walks maps;
                        ``var("x", default=1)``; an unset var without default is an error
``VAR``                 every var whose name is an identifier is also a plain name: ``{{ region }}``
``include("f.yaml")``   the rendered text of a file relative to the spec, inside its directory tree
``env("NAME")``         an environment variable (the only way to read one); ``env("N", "dflt")``
``default(v, d)``       ``d`` when ``v`` is undefined or null (also the ``| default(d)`` filter)
``required(v, "msg")``  ``v``, or fail with ``msg`` when ``v`` is undefined, null or ``""``
``jsonEncode(v)``,      JSON text of a value / a value of JSON text (also filters, as are
``jsonDecode(s)``       ``yamlEncode``/``yamlDecode``; Jinja's ``| tojson`` works too)
``instance``, ``INDEX``  only in a flavor's ``Init``: the instance being prepared (docs/group-spec.md)
======================  ===========================================================================

The sandbox holds, per render: no attribute of Python internals (``__class__``, ``_private``:
Jinja's sandbox), no mutation of lists and dicts (the immutable sandbox), no file outside the
template's directory tree (symlinks resolved), at most :data:`RENDER_SECONDS` of work (every loop
iteration, call, attribute and operator checks the clock) and no value or output over
:data:`OUTPUT_CAP` (``'x' * 10**9``, ``str.center(10**9)`` and ``%0999999999d`` are refused before
they allocate). ``lipsum``, ``cycler`` and ``joiner`` are not offered. Every failure is one
:class:`~infrakit.errors.SpecError` line: ``FILE:LINE: what went wrong; what to do``.
"""

from __future__ import annotations

import contextvars
import difflib
import json
import os
import re
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from infrakit.errors import SpecError
from infrakit.specfile.syntax import has_template_syntax

__all__ = [
    "DEFERRED_CONTEXT",
    "FUNCTIONS",
    "OUTPUT_CAP",
    "RENDER_SECONDS",
    "Deferred",
    "has_template_syntax",
    "render",
]

#: Wall-clock budget of one render (includes rendered from it count toward it).
RENDER_SECONDS = 1.0
#: The largest rendered text, and the largest string or list a template may build.
OUTPUT_CAP = 16 * 1024 * 1024
#: Files included inside included files, at most.
MAX_INCLUDE_DEPTH = 16
#: Loop iterations between clock checks.
_CHECK_EVERY = 64


class _Failure(Exception):
    """A template asked to fail (``required``), or broke a limit: the message is the line."""


class _NoValue:
    """The marker of an argument not given."""


_NO_VALUE = _NoValue()


@dataclass
class _Budget:
    """What one render may still use, and the files it is inside."""

    deadline: float
    variables: Mapping[str, Any]
    context: Mapping[str, Any]
    env: _Environment
    includes: list[str] = field(default_factory=list)
    ticks: int = 0

    def tick(self) -> None:
        self.ticks += 1
        if self.ticks % _CHECK_EVERY == 0 and time.monotonic() > self.deadline:
            raise _Failure(
                f"rendering took more than {RENDER_SECONDS:g}s (a huge loop?); make the "
                "template do less work"
            )


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "infrakit_template_budget", default=None
)


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick()


def _sized(value: Any) -> Any:
    """``value``, refused when it is a string, bytes or collection over the cap."""
    if isinstance(value, str | bytes | list | tuple | dict) and len(value) > OUTPUT_CAP:
        raise _Failure(_too_big())
    return value


def _too_big() -> str:
    return f"a value would be larger than {OUTPUT_CAP // (1024 * 1024)} MiB; build less"


#: Digits that, as a width or count, would exceed the cap (format specs, ``%`` formats).
_BIG_NUMBER = re.compile(r"\d{8,}")


def _check_number(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > OUTPUT_CAP:
        raise _Failure(f"{value} is too large for a width or a count here; use a smaller number")


def _check_format_text(value: Any) -> None:
    if isinstance(value, str):
        for digits in _BIG_NUMBER.findall(value):
            _check_number(int(digits))


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse, before computing it, an operation whose result would be huge."""
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            sequence = isinstance(seq, str | bytes | list | tuple) and isinstance(count, int)
            if sequence and len(seq) * max(count, 0) > OUTPUT_CAP:
                raise _Failure(_too_big())
        numbers = isinstance(left, int) and isinstance(right, int)
        if numbers and left.bit_length() + right.bit_length() > 1_000_000:
            raise _Failure("a number would have more than a million bits; use smaller numbers")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int):
        if abs(left) > 1 and right * max(abs(left).bit_length(), 1) > 1_000_000:
            raise _Failure(f"{left} ** {right} is too large a number; use smaller numbers")
    elif operator == "%":
        _check_format_text(left)


#: Methods of str whose int arguments are widths or counts.
_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map"}


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    method = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if isinstance(owner, str):
        if name in _WIDTH_METHODS:
            for arg in (*args, *kwargs.values()):
                _check_number(arg)
            if name.startswith("format"):
                _check_format_text(owner)
        elif name == "replace" and len(args) >= 2:
            _check_replace(owner, args[0], args[1])


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        count = text.count(old) if old else len(text) + 1
        if len(text) + count * len(new) > OUTPUT_CAP:
            raise _Failure(_too_big())


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox with a clock and a size cap on every operation (module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//", "/", "-"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        guarded = _Guard().visit(tree)
        assert isinstance(guarded, nodes.Template)
        return guarded

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        _tick()
        _check_binop(operator, left, right)
        return _sized(super().call_binop(context, operator, left, right))

    def call(
        __self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any
    ) -> Any:
        _tick()
        _check_call(__obj, args, kwargs)
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)


class _Guard(NodeTransformer):
    """Makes every loop iteration check the clock and every ``a ~ b`` check its size."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "__infrakit_loop", [], [], None, None)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(node, "__infrakit_str", [], [], None, None)


@jinja2.pass_context
def _loop_guard(context: jinja2.runtime.Context, iterable: Any) -> Iterator[Any]:
    if isinstance(iterable, jinja2.Undefined):
        iterable = iter(iterable)  # StrictUndefined raises here, naming the variable
    for item in iterable:
        _tick()
        yield item


@jinja2.pass_context
def _str_guard(context: jinja2.runtime.Context, value: Any) -> str:
    return str(_sized(str(value)))


class _TreeLoader(jinja2.BaseLoader):
    """Files of one directory tree: ``..`` and symlinks out of it are refused."""

    def __init__(self, root: Path | None) -> None:
        self.root = root.resolve() if root is not None else None

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        if self.root is None:
            raise _Failure(
                f"include {template!r}: this template has no directory to include from (it "
                "came from standard input or a URL); inline the file"
            )
        path = (self.root / template).resolve()
        if not path.is_relative_to(self.root):
            raise _Failure(
                f"include {template!r}: {path} is outside {self.root}, the spec's directory "
                "tree; keep included files beside the spec"
            )
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise _Failure(f"include {template!r}: {path} is not a regular file")
            if size > OUTPUT_CAP:
                raise _Failure(f"include {template!r}: {path} is larger than the cap; shrink it")
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise _Failure(f"include {template!r}: {path} does not exist; check the path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise _Failure(f"include {template!r}: cannot read {path} ({exc})") from None
        mtime = path.stat().st_mtime
        return text, str(path), lambda: path.exists() and path.stat().st_mtime == mtime


#: Comment delimiters of shell templates (Init lines, init scripts): ``{#`` is shell's
#: ``${#var}`` there, so comments are ``{## ... ##}``.
SHELL_COMMENTS = ("{##", "##}")


@lru_cache(maxsize=32)
def _environment(root: Path | None, shell: bool = False) -> _Environment:
    comments = SHELL_COMMENTS if shell else ("{#", "#}")
    env = _Environment(
        loader=_TreeLoader(root),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        comment_start_string=comments[0],
        comment_end_string=comments[1],
    )
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)
    env.globals.update(FUNCTIONS)
    env.filters.update(_FILTERS)
    env.filters["__infrakit_loop"] = _loop_guard
    env.filters["__infrakit_str"] = _str_guard
    for name in ("center", "indent", "wordwrap", "truncate", "format", "replace"):
        env.filters[name] = _checked_filter(env.filters[name], name)
    return env


def _checked_filter(inner: Callable[..., Any], name: str) -> Callable[..., Any]:
    """A built-in filter whose widths, counts and result are checked against the cap."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        _tick()
        values = [a for a in args if not isinstance(a, jinja2.runtime.Context | jinja2.Environment)]
        for arg in (*values[1:], *kwargs.values()):
            _check_number(arg)
        if name == "format" and values:
            _check_format_text(values[0])
        if name == "replace" and len(values) >= 3:
            _check_replace(values[0], values[1], values[2])
        if name == "indent" and values and isinstance(values[0], str):
            width = values[1] if len(values) > 1 and isinstance(values[1], int) else 4
            if len(values[0]) + (values[0].count("\n") + 1) * width > OUTPUT_CAP:
                raise _Failure(_too_big())
        return _sized(inner(*args, **kwargs))

    checked.__dict__.update(inner.__dict__)  # keeps jinja's pass_context / pass_environment marks
    checked.__name__ = getattr(inner, "__name__", name)
    return checked


# --- the functions -----------------------------------------------------------------------------


def _current() -> _Budget:
    budget = _BUDGET.get()
    if budget is None:  # pragma: no cover - the functions are only reachable while rendering
        raise _Failure("template functions work only while a template renders")
    return budget


def _var(name: str, default: Any = _NO_VALUE) -> Any:
    variables = _current().variables
    if name in variables:
        return variables[name]
    node: Any = variables
    for part in name.strip("/").split("/"):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            if default is not _NO_VALUE:
                return default
            known = ", ".join(sorted(variables)) or "none"
            raise _Failure(
                f"var {name!r} is not set (vars set: {known}); pass --var {name}=VALUE, add it "
                f"to the spec's Vars, or write var({name!r}, default=...)"
            )
    return node


def _include(path: str) -> str:
    budget = _current()
    if path in budget.includes:
        cycle = " -> ".join([*budget.includes, path])
        raise _Failure(f"include cycle: {cycle}; break the cycle")
    if len(budget.includes) >= MAX_INCLUDE_DEPTH:
        raise _Failure(f"includes nested deeper than {MAX_INCLUDE_DEPTH}; flatten them")
    template = budget.env.get_template(path)
    budget.includes.append(path)
    try:
        return str(_sized(template.render({**_names(budget.variables), **budget.context})))
    finally:
        budget.includes.pop()


def _env(name: str, default: Any = _NO_VALUE) -> Any:
    value = os.environ.get(name)
    if value is not None:
        return value
    if default is not _NO_VALUE:
        return default
    raise _Failure(
        f"environment variable {name} is not set; set it, or write env({name!r}, 'default')"
    )


def _default(value: Any, fallback: Any) -> Any:
    return fallback if value is None or isinstance(value, jinja2.Undefined) else value


def _required(value: Any, message: str = "a required value is missing") -> Any:
    if isinstance(value, jinja2.Undefined) or value is None or value == "":
        raise _Failure(str(message))
    return value


def _json_encode(value: Any, indent: int | None = None) -> str:
    if indent is not None:
        _check_number(indent)
    return str(_sized(json.dumps(value, indent=indent)))


def _json_decode(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise _Failure(f"jsonDecode: not JSON ({exc})") from None


def _yaml_encode(value: Any) -> str:
    from infrakit.specfile.documents import dump_yaml

    return str(_sized(dump_yaml(value)))


def _yaml_decode(text: str) -> Any:
    from infrakit.specfile.documents import YamlError, load_yaml

    try:
        return load_yaml(str(text))
    except YamlError as exc:
        raise _Failure(f"yamlDecode: not YAML ({exc.problem} at {exc.line}:{exc.column})") from None


#: The functions every template can call (module docstring).
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "var": _var,
    "include": _include,
    "env": _env,
    "default": _default,
    "required": _required,
    "jsonEncode": _json_encode,
    "jsonDecode": _json_decode,
    "yamlEncode": _yaml_encode,
    "yamlDecode": _yaml_decode,
}
_FILTERS: dict[str, Callable[..., Any]] = {
    "jsonEncode": _json_encode,
    "jsonDecode": _json_decode,
    "yamlEncode": _yaml_encode,
    "yamlDecode": _yaml_decode,
    "required": _required,
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _names(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The vars a template sees as plain names (functions keep their names)."""
    return {k: v for k, v in variables.items() if _IDENTIFIER.fullmatch(k) and k not in FUNCTIONS}


class Deferred:
    """A name only a later render can resolve. In a spec template, ``instance`` and ``INDEX``
    are deferred: ``{{ instance.LogicalID }}`` renders as itself, so the flavor's Init gets the
    template and renders it per instance (filters on a deferred name are not kept: wrap such
    lines in ``{% raw %}...{% endraw %}``)."""

    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, name: str) -> Deferred:
        if name.startswith("_"):
            raise AttributeError(name)
        return Deferred(f"{self._path}.{name}")

    def __getitem__(self, key: object) -> Deferred:
        return Deferred(f"{self._path}[{key!r}]")

    def __str__(self) -> str:
        return "{{ " + self._path + " }}"


#: What a spec template sees of names that belong to Init templates.
DEFERRED_CONTEXT: dict[str, Any] = {"instance": Deferred("instance"), "INDEX": Deferred("INDEX")}


# --- rendering ---------------------------------------------------------------------------------


def render(
    text: str,
    *,
    name: str,
    root: Path | str | None = None,
    variables: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    shell: bool = False,
) -> str:
    """Render the template ``text`` (called ``name`` in messages: ``name:LINE: ...``) with
    ``variables`` (``var`` and plain names) and ``context`` (more plain names); includes are
    read from ``root``; ``shell``: a shell script, whose comments are ``{## ##}``
    (:data:`SHELL_COMMENTS`). Raises :class:`~infrakit.errors.SpecError` with one line."""
    env = _environment(Path(root).resolve() if root is not None else None, shell)
    variables = dict(variables or {})
    budget = _Budget(time.monotonic() + RENDER_SECONDS, variables, dict(context or {}), env)
    token = _BUDGET.set(budget)
    try:
        template = _compile(env, text, name)
        size = 0
        chunks: list[str] = []
        for chunk in template.generate({**_names(variables), **budget.context}):
            size += len(chunk)
            if size > OUTPUT_CAP:
                raise _Failure(
                    f"the rendered text is larger than {OUTPUT_CAP // (1024 * 1024)} MiB; "
                    "render less"
                )
            chunks.append(chunk)
        return "".join(chunks)
    except SpecError:
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise SpecError(_syntax_message(exc, name, text)) from None
    except Exception as exc:
        seen = None if variables or not budget.context else sorted(budget.context)
        raise SpecError(_render_message(exc, name, text, seen)) from None
    finally:
        _BUDGET.reset(token)


@lru_cache(maxsize=256)
def _compile(env: _Environment, text: str, name: str) -> jinja2.Template:
    code = env.compile(text, name=name, filename=name)
    return env.template_class.from_code(env, code, env.make_globals(None), None)


_GO_CALL = re.compile(r"\{\{-?\s*(\w+)\s+\"")


def _syntax_message(exc: jinja2.TemplateSyntaxError, name: str, text: str) -> str:
    where = exc.filename or name
    line = exc.lineno or 1
    hint = "fix the template"
    source = (exc.source if exc.source is not None else text).splitlines()
    bad = source[line - 1] if 0 < line <= len(source) else ""
    go = _GO_CALL.search(bad)
    if go:
        hint = (
            f"this is Go template syntax (InfraKit's); infrakit templates are Jinja2: write "
            f'{{{{ {go.group(1)}("...") }}}}'
        )
    return f"{where}:{line}: template syntax error: {exc.message}; {hint}"


def _render_message(exc: BaseException, name: str, text: str, seen: list[str] | None) -> str:
    """One line for a render error; ``seen``: the only names the template sees, when it has no
    vars (a flavor's Init)."""
    where, line = _template_frame(exc, name)
    place = f"{where}:{line}" if line else where
    if isinstance(exc, _Failure):
        return f"{place}: {exc}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"{place}: {_undefined_message(str(exc.message or exc), text, seen)}"
    if isinstance(exc, SecurityError):
        return (
            f"{place}: not allowed in a spec template: {exc}; templates read vars and call the "
            f"template functions ({', '.join(FUNCTIONS)}), not Python internals"
        )
    if isinstance(exc, RecursionError):
        return f"{place}: includes or macros recurse too deep (a cycle?); break the cycle"
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"{place}: include {exc.name!r} not found; check the path"
    return f"{place}: {type(exc).__name__}: {exc}; fix the template"


def _template_frame(exc: BaseException, name: str) -> tuple[str, int]:
    """The template file and line where ``exc`` happened (Jinja rewrites tracebacks so that
    template frames carry template lines), innermost first."""
    found: tuple[str, int] = (name, 0)
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if filename == name or not (filename.endswith(".py") or filename.startswith("<")):
            found = (filename, lineno)
    return found


_UNDEFINED = re.compile(r"'([^']+)' is undefined")


def _undefined_message(message: str, text: str, seen: list[str] | None) -> str:
    match = _UNDEFINED.fullmatch(message)
    if match is None:
        return f"{message}; check the name, or give a fallback with | default(...)"
    missing = match.group(1)
    if missing in _called_names(text):
        known = list(FUNCTIONS)
        close = difflib.get_close_matches(missing, known, n=1)
        guess = f"did you mean {close[0]}? " if close else ""
        return (
            f"no function {missing!r}; {guess}the template functions are {', '.join(known)} "
            "(and Jinja2's filters)"
        )
    if seen is not None:
        return f"undefined variable {missing!r}; this template sees {', '.join(seen)}"
    return (
        f"undefined variable {missing!r}; pass --var {missing}=VALUE, add it to the spec's Vars, "
        f"or write {{{{ {missing} | default('...') }}}}"
    )


def _called_names(text: str) -> set[str]:
    try:
        tree = jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError:
        return set()
    return {
        call.node.name for call in tree.find_all(nodes.Call) if isinstance(call.node, nodes.Name)
    }


def render_values(values: Iterable[str], **kwargs: Any) -> list[str]:
    """:func:`render` each text that is a template; others pass through verbatim."""
    return [render(v, **kwargs) if has_template_syntax(v) else v for v in values]
