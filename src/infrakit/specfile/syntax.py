"""Whether a text is a spec template, without loading Jinja2.

:func:`has_template_syntax` is what a flavor's ``Init`` line and a spec file are checked with
before anything is rendered; most are plain text, so a daemon that never renders a template
does not import :mod:`infrakit.specfile.template` (Jinja2, ~20 ms of a start).
"""

from __future__ import annotations

import re

__all__ = ["has_template_syntax"]

_SYNTAX = re.compile(r"\{[{%]")


def has_template_syntax(text: str) -> bool:
    """True when ``text`` is a template: it has ``{{`` or ``{%`` (a comment alone, ``{#``, does
    not make one: shell's ``${#var}`` stays plain text)."""
    return _SYNTAX.search(text) is not None
