"""Documented outputs, checked: every console block the docs mark with

    <!-- checked by tests/test_docs_outputs.py -->
    <!-- checked by tests/test_docs_outputs.py, with `infrakit up examples/cattle.json` running -->

is run for real, command by command, and what each ``$ `` line prints (stdout and stderr, as a
terminal shows them) must be exactly the lines under it. So a message the docs quote is the
message the command prints, and a change to one without the other fails here.

How a block runs: in a fresh directory with ``examples/`` (the repository's) and a fresh ``$HOME``
with no ``INFRAKIT_*`` settings (the default ``~/.infrakit``), each command by ``bash -c``; paths
under that ``$HOME`` are compared as ``~``. A command whose output starts with ``Error: `` must
exit 1, any other 0. The plugins a block needs (the ``with ... running`` part) are started before
it as real processes and stopped by PID after it; a block may create files (``echo ... > x.json``).
Only blocks whose output does not change from run to run (no instance IDs or times) are marked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infrakit.testing import short_tempdir
from infrakit.testing.processes import Daemon, bin_path
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
MARK = re.compile(
    r"^<!-- checked by tests/test_docs_outputs\.py(?:, with `(?P<setup>[^`]+)` running)? -->\n"
    r"```console\n(?P<body>.*?)^```",
    re.MULTILINE | re.DOTALL,
)
UP_SOCKETS = ["group", "instance-file", "flavor-vanilla", "flavor-combo"]
#: What a block may need running, and the sockets that say it is up.
SETUPS = {
    "infrakit up examples/cattle.json": UP_SOCKETS,
    "infrakit plugin start file": ["instance-file"],
}


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    setup: str | None
    #: (command, expected output lines) in order.
    steps: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def parse_blocks() -> list[Block]:
    blocks = []
    for doc in DOCS:
        text = doc.read_text()
        for match in MARK.finditer(text):
            steps: list[tuple[str, list[str]]] = []
            for line in match["body"].splitlines():
                if line.startswith("$ "):
                    steps.append((line[2:], []))
                else:
                    assert steps, f"{doc}: a checked block starts with output, not a $ command"
                    steps[-1][1].append(line)
            blocks.append(
                Block(
                    doc,
                    text.count("\n", 0, match.start()) + 1,
                    match["setup"],
                    tuple((cmd, tuple(out)) for cmd, out in steps),
                )
            )
    return blocks


BLOCKS = parse_blocks()


def test_the_docs_mark_blocks_and_name_known_setups() -> None:
    assert len(BLOCKS) >= 4, "the checked blocks went missing: see this module's docstring"
    unknown = {b.setup for b in BLOCKS if b.setup is not None} - set(SETUPS)
    assert not unknown, f"add these to SETUPS (with the sockets that say they run): {unknown}"


@pytest.fixture
def place() -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh working directory and ``$HOME`` (short: socket paths stay under 107 bytes)."""
    home = short_tempdir("ikd")
    work = home / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
    env["HOME"] = str(home)
    env["PATH"] = f"{Path(bin_path('infrakit')).parent}:{env.get('PATH', '')}"
    try:
        yield work, env
    finally:
        shutil.rmtree(home, ignore_errors=True)


def start_setup(setup: str, work: Path, env: dict[str, str]) -> Daemon:
    home = Path(env["HOME"])
    daemon = Daemon(
        setup.split(),
        {**env, "INFRAKIT_HOME": str(home / ".infrakit")},
        sockets=SETUPS[setup],
        cwd=work,
        log=home / "setup.log",
    )
    daemon.start()
    if "examples/cattle.json" in setup:

        def converged() -> bool:
            out = subprocess.run(
                [bin_path("infrakit"), "group", "describe", "cattle", "-o", "json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout
            return bool(out) and json.loads(out)["Converged"]

        wait_for(converged, timeout=30, what="cattle converged")
    return daemon


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_a_documented_block_prints_what_the_docs_say(
    block: Block, place: tuple[Path, dict[str, str]]
) -> None:
    work, env = place
    daemon = start_setup(block.setup, work, env) if block.setup else None
    try:
        for command, expected in block.steps:
            ran = subprocess.run(
                ["bash", "-c", command],
                cwd=work,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=60,
                check=False,
            )
            printed = ran.stdout.replace(env["HOME"], "~").splitlines()
            assert printed == list(expected), (
                f"{block.name}: `{command}` printed (paste it into the doc if it is right):\n"
                + "\n".join(printed)
            )
            # A failing command ends with its Error: line (numbered problems come before it).
            failed = any(line.startswith("Error: ") for line in printed)
            assert ran.returncode == (1 if failed else 0), (block.name, command, ran.returncode)
    finally:
        if daemon is not None:
            daemon.stop()
