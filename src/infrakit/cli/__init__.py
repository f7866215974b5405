"""The ``infrakit`` command: thin - parse, call the library or a plugin socket, format.

Commands: ``up``, ``plugin ls|start|stop|kinds``, ``group ...``, ``instance --name N ...``,
``flavor --name N ...``, ``event tail``, ``manager status|specs``, ``template render``,
``completion``, ``version``. See docs/cli.md.

The click group is :data:`infrakit.cli.root.cli` (``from infrakit.cli import cli`` works too).
:func:`main` first offers the arguments to :mod:`infrakit.cli.fastpath`, which runs the big reads
(``group describe``, ``instance describe``) without importing click - about a fifth of such a
command's time - and prints exactly what the click command prints; anything else goes to click.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

__all__ = ["cli", "main"]

if TYPE_CHECKING:
    from infrakit.cli.root import cli


def __getattr__(name: str) -> Any:
    if name == "cli":
        from infrakit.cli.root import cli

        return cli
    raise AttributeError(f"module 'infrakit.cli' has no attribute {name!r}")


def main() -> None:
    from infrakit._utils import collector

    collector.defer()  # a command starts in ~100 ms; collections took 5-10 ms of it
    from infrakit.cli import fastpath

    if fastpath.run(sys.argv[1:]):
        fastpath.leave()
    from infrakit.cli.root import cli

    cli(prog_name="infrakit")
