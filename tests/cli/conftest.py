"""CLI unit tests: commands run in-process with click's CliRunner; where a plugin is needed it is
served in-process on real sockets in the test's plugin directory (:class:`ThreadedHost`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from infrakit.cli import cli
from tests.threaded_host import ThreadedHost

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def invoke(*args: str, command: click.Command = cli) -> Result:
    """Run ``infrakit ARGS`` (or ``command``) in-process; stdout and stderr apart."""
    return CliRunner().invoke(command, list(args), catch_exceptions=False)


def error_line(result: Result) -> str:
    """The one ``Error:`` line of a failed command (exit 1, nothing on stdout)."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0].removeprefix("Error: ")


@dataclass
class Stack:
    """``infrakit up``'s plugins (a plain group controller, memory store) served in-process."""

    host: ThreadedHost
    instances: Path

    def cli(self, *args: str) -> str:
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "-o", "json"))


@pytest.fixture
def stack(plugin_dir: Path, infrakit_home: Path) -> Iterator[Stack]:
    instances = infrakit_home / "instances"
    with ThreadedHost(plugin_dir, infrakit_home) as host:
        host.start_kind("file", "instance-file", {"dir": str(instances)})
        host.start_kind("vanilla", "flavor-vanilla")
        host.start_kind("group", "group", {"store": "memory", "poll-interval": "1h"})
        yield Stack(host, instances)
