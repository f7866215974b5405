"""A kind's options, declared once: name, help, default, environment variable and parser.

An :class:`Option` is what ``-o KIND.NAME=VALUE`` sets on ``infrakit plugin start``, what a console
script (``infrakit-group-default --poll-interval``) and ``infrakit up`` offer as a flag, and what
``infrakit plugin kinds`` lists. Its value is resolved in one order - the value given, else the
environment variable, else the default (an empty value counts as not given) - and then parsed by
its :class:`Parser`, so ``build(ctx)`` receives seconds for a duration, ``(host, port)`` for an
address and a :class:`~pathlib.Path` for a path::

    Option("poll-interval", "resync period", default="10s", parse=duration)

A value the parser refuses is one :class:`~infrakit.errors.SpecError` line naming the kind, the
option, where the value came from, what was expected and an example::

    group option poll-interval: got 'soon', expected a Go duration above 0 (500ms, 1m30s; a bare number is seconds), e.g. 10s

This module imports nothing heavy: listing kinds and their options never loads a plugin.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from infrakit._utils.duration import parse_duration
from infrakit.errors import SpecError

__all__ = [
    "Option",
    "Parser",
    "choice",
    "duration",
    "env_sources",
    "flag",
    "host_port",
    "integer",
    "non_negative_duration",
    "path",
    "resolve_options",
]


@dataclass(frozen=True)
class Parser:
    """How an option's text becomes its value.

    ``convert`` raises ``ValueError`` for text it refuses; values already of a ``parsed`` type
    (what ``convert`` returns, or what in-process callers pass) are kept as they are, so parsing
    a resolved value again changes nothing.
    """

    #: What the flag's value is called in help (``DURATION``, ``HOST:PORT``).
    metavar: str
    #: What a good value looks like, for the error line: ``a Go duration above 0 ...``.
    expected: str
    #: A good value, used in the error line when the option has no default.
    example: str
    convert: Callable[[str], object]
    parsed: tuple[type, ...] = ()
    #: A yes/no option: a flag without a value on the console scripts and ``up``.
    is_flag: bool = False
    #: The only values accepted (a console script offers them as a choice).
    choices: tuple[str, ...] = ()

    def __call__(self, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, bool):  # a bool is an int too: only a flag keeps it
            if bool in self.parsed:
                return value
        elif isinstance(value, self.parsed):
            return value
        return self.convert(str(value).strip())


def _duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("not above 0")
    return seconds


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("not HOST:PORT")
    return host.strip("[]"), int(port)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError("not a yes/no value")


def _path(text: str) -> Path:
    if "\0" in text:
        raise ValueError("a NUL byte")
    return Path(text).expanduser()


def _integer(text: str) -> int:
    return int(text, 10)


#: Go durations above 0 (``500ms``, ``10s``, ``1m30s``; a bare number is seconds) -> seconds.
duration = Parser(
    "DURATION",
    "a Go duration above 0 (500ms, 1m30s; a bare number is seconds)",
    "10s",
    _duration,
    parsed=(int, float),
)
#: Go durations, 0 included -> seconds.
non_negative_duration = Parser(
    "DURATION",
    "a Go duration, 0s or more (500ms, 1m30s; a bare number is seconds)",
    "10s",
    parse_duration,
    parsed=(int, float),
)
#: ``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``) -> bool.
flag = Parser("BOOL", "true or false (or 1/0, yes/no, on/off)", "true", _flag, (bool,), True)
#: ``HOST:PORT`` with a fixed port (``[::1]:24864`` for IPv6) -> ``(host, port)``.
host_port = Parser(
    "HOST:PORT", "HOST:PORT with a fixed port", "127.0.0.1:24864", _host_port, (tuple,)
)
#: A file system path (``~`` expanded) -> :class:`~pathlib.Path`.
path = Parser("PATH", "a file system path", "/var/lib/infrakit", _path, (Path,))
#: A whole number -> int.
integer = Parser("N", "an integer", "1", _integer, (int,))


def choice(*values: str) -> Parser:
    """One of ``values`` (exactly as written) -> that string."""

    def convert(text: str) -> str:
        if text not in values:
            raise ValueError("not a choice")
        return text

    return Parser(
        "|".join(values), f"one of {', '.join(values)}", values[0], convert, choices=values
    )


@dataclass(frozen=True)
class Option:
    """One option of a kind: ``-o KIND.NAME=VALUE`` on ``plugin start``, ``--NAME`` on its console
    script, ``env`` (a variable that sets it when no value is given, InfraKit HEAD style)."""

    name: str
    help: str
    #: As a user would write it (``"10s"``); parsed like a given value.
    default: object = None
    env: str | None = None
    #: None: the value is the text as given.
    parse: Parser | None = None

    def raw(self, given: Mapping[str, object]) -> tuple[object, str | None]:
        """The unparsed value and the environment variable it came from (None: given or default)."""
        value = given.get(self.name)
        if value is not None and value != "":
            return value, None
        if self.env and os.environ.get(self.env):
            return os.environ[self.env], self.env
        return self.default, None

    def resolve(self, given: Mapping[str, object]) -> object:
        """The value from ``given``, else the environment variable, else the default (unparsed)."""
        return self.raw(given)[0]

    def value(self, given: Mapping[str, object], kind: str) -> object:
        """The resolved value, parsed; a bad one is a :class:`SpecError` naming ``kind``."""
        raw, env = self.raw(given)
        if self.parse is None or raw is None:
            return raw
        try:
            return self.parse(raw)
        except ValueError:
            raise SpecError(self.refusal(kind, raw, env)) from None

    def refusal(self, kind: str, raw: object, env: str | None = None) -> str:
        """The one line for a value the parser refuses."""
        assert self.parse is not None
        source = f" from {env}" if env else ""
        example = self.default if self.default not in (None, "", False) else self.parse.example
        return (
            f"{kind} option {self.name}: got {str(raw)!r}{source}, expected "
            f"{self.parse.expected}, e.g. {example}"
        )


def resolve_options(
    kind: str, options: Iterable[Option], given: Mapping[str, object]
) -> dict[str, object]:
    """Every option of ``kind`` resolved and parsed (None for one without a value).

    Refuses names ``kind`` does not take (``-o file.nosuchopt=1``), naming the ones it does, and
    values its parsers refuse; both before anything starts.
    """
    declared = {opt.name: opt for opt in options}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        takes = f"{kind} takes: {', '.join(declared)}" if declared else f"{kind} takes none"
        raise SpecError(
            f"unknown option {', '.join(f'{kind}.{o}' for o in unknown)} ({takes}); "
            "see `infrakit plugin kinds`"
        )
    return {name: opt.value(given, kind) for name, opt in declared.items()}


def env_sources(options: Iterable[Option], given: Mapping[str, object]) -> dict[str, str]:
    """The options whose value comes from their environment variable, ``given`` not setting
    them: name -> variable (hints then name the variable, not a flag nobody typed)."""
    return {opt.name: env for opt in options if (env := opt.raw(given)[1]) is not None}
