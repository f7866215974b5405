"""docs/writing-a-plugin.md, checked: examples/my_cloud.py is a complete provider in at most 30
lines of code, it works over its socket (serve_plugin), as a real process driven by the group
controller through the CLI, and as an entry-point kind started by ``infrakit plugin start``."""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import os
import subprocess
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from infrakit import errors
from infrakit.spi.instance import Context, Spec
from infrakit.testing import serve_plugin
from tests.e2e.conftest import E2E, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "my_cloud.py"
GUIDE = ROOT / "docs" / "writing-a-plugin.md"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("my_cloud", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOCUMENTABLE = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def lines_of_code(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    docstring_lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        has_docstring = isinstance(node, DOCUMENTABLE) and ast.get_docstring(node) is not None
        if has_docstring:
            first = node.body[0]
            docstring_lines.update(range(first.lineno, (first.end_lineno or 0) + 1))
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT):
            continue
        if tok.type in (tokenize.DEDENT, tokenize.ENDMARKER):
            continue
        code_lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(code_lines - docstring_lines)


def test_the_example_stays_within_30_lines_of_code() -> None:
    count = lines_of_code(EXAMPLE.read_text())
    assert count <= 30, f"examples/my_cloud.py has {count} lines of code; the guide promises <= 30"


def test_the_guide_shows_the_example_verbatim() -> None:
    guide = GUIDE.read_text()
    assert "```python\n" + EXAMPLE.read_text() + "```" in guide, (
        "docs/writing-a-plugin.md must show examples/my_cloud.py exactly; copy it again"
    )


# --- the provider over a real socket (what plugin authors' own tests look like) -----------------


async def test_my_cloud_over_its_socket() -> None:
    my_cloud = load_example()
    async with serve_plugin(my_cloud.MyCloud(), "my-cloud") as h:
        await h.instance.validate({"size": "small"})
        with pytest.raises(errors.SpecError, match="expected a JSON object"):
            await h.instance.validate(["not", "an", "object"])

        web = await h.instance.provision(Spec(tags={"infrakit.group": "web", "tier": "front"}))
        db = await h.instance.provision(Spec(tags={"infrakit.group": "db"}, logical_id="db-1"))
        assert web != db

        found = await h.instance.describe_instances({"infrakit.group": "web"})
        assert [(d.id, d.tags["tier"]) for d in found] == [(web, "front")]
        everything = await h.instance.describe_instances({})
        assert {d.id: d.logical_id for d in everything} == {web: None, db: "db-1"}

        await h.instance.destroy(web, Context("terminate"))
        assert [d.id for d in await h.instance.describe_instances({})] == [db]
        with pytest.raises(errors.NotFoundError, match=f"no instance {web}"):
            await h.instance.destroy(web, Context("terminate"))


# --- the guide's own test, run as a plugin author runs it ----------------------------------------


def guide_block(language: str, starts: str) -> str:
    """The guide's one ``language`` code block whose text starts with ``starts``."""
    blocks = [b for b in GUIDE.read_text().split(f"```{language}\n")[1:] if b.startswith(starts)]
    assert len(blocks) == 1, f"docs/writing-a-plugin.md: one {language} block starting {starts!r}"
    return blocks[0].split("```", 1)[0]


def run_pytest(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)],
        cwd=directory,
        env={**os.environ, "PYTHONPATH": str(EXAMPLE.parent)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(180)
def test_the_guides_test_passes_with_no_warning_as_shown(tmp_path: Path) -> None:
    """A plugin author's first run is clean: the test and the pytest settings the guide shows."""
    test = guide_block("python", "import pytest\n")
    settings = guide_block("toml", "[tool.pytest.ini_options]\n")
    assert "asyncio_default_fixture_loop_scope" in settings
    (tmp_path / "test_my_cloud.py").write_text(test)
    (tmp_path / "pyproject.toml").write_text(settings)
    shown = run_pytest(tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "1 passed" in shown.stdout and "warning" not in (shown.stdout + shown.stderr).lower()
    # The line the guide adds is what keeps it clean (pytest-asyncio warns without it).
    (tmp_path / "pyproject.toml").write_text(
        "".join(line for line in settings.splitlines(True) if "loop_scope" not in line)
    )
    bare = run_pytest(tmp_path)
    assert (
        bare.returncode == 0 and "asyncio_default_fixture_loop_scope" in bare.stdout + bare.stderr
    )


# --- end to end: real processes, the group controller, the CLI ----------------------------------


@pytest.fixture
def rig(infrakit_home: Path) -> Iterator[E2E]:
    e2e = E2E(infrakit_home)
    try:
        yield e2e
    finally:
        e2e.stop_all()


def group_spec(home: Path, size: int) -> Path:
    spec = {
        "ID": "my-group",
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "my-cloud", "Properties": {"size": "small"}},
            "Flavor": {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo hello"]}},
        },
    }
    path = home / "my-group.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_group_of_three_on_my_cloud_through_the_cli(rig: E2E) -> None:
    rig.start(sys.executable, str(EXAMPLE), sockets=["my-cloud"])
    rig.start("infrakit-group-default", "--poll-interval", "200ms", sockets=["group"])
    rig.start("infrakit-flavor-vanilla", sockets=["flavor-vanilla"])

    def members() -> list[str]:
        return rig.lines("instance", "--name", "my-cloud", "describe", "-q")

    out = rig.run("group", "commit", str(group_spec(rig.home, 3))).stdout
    assert out == "Committed my-group: Managing 3 instances\n"
    rows = wait_for(lambda: len(members()) == 3 and members(), what="3 instances on my-cloud")
    assert all(r.startswith("vm-") and "infrakit.group=my-group" in r for r in rows)

    # my-cloud publishes no events: the controller notices a lost instance by polling.
    lost = rows[0].split()[0]
    assert (
        rig.run("instance", "--name", "my-cloud", "destroy", lost).stdout == f"destroyed {lost}\n"
    )
    wait_for(
        lambda: len(ids := [r.split()[0] for r in members()]) == 3 and lost not in ids,
        what="the lost instance replaced",
    )

    assert rig.run("group", "destroy", "my-group").stdout == "Destroy my-group initiated\n"
    assert members() == []
    assert rig.run("group", "ls", "-q").stdout == ""


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_starting_the_example_twice_is_one_line_naming_the_socket(rig: E2E) -> None:
    """``infrakit.serve`` itself turns a taken name into one line (every plugin author gets it)."""
    rig.start(sys.executable, str(EXAMPLE), sockets=["my-cloud"])
    second = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env=rig.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    socket = rig.plugins / "my-cloud"
    assert (second.returncode, second.stdout) == (1, "")
    assert second.stderr == (
        f"Error: plugin my-cloud: a running plugin already listens on {socket}; stop it first "
        "(infrakit plugin stop my-cloud) or serve this one under another name\n"
    )
    assert rig.lines("plugin", "ls", "-q") == ["my-cloud"]  # the first one still serves
    assert rig.run("instance", "--name", "my-cloud", "describe", "-q").stdout == ""


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_an_entry_point_makes_it_a_kind_for_plugin_start(rig: E2E, tmp_path: Path) -> None:
    # What `pip install` of a package declaring the entry point leaves behind, without installing.
    dist = tmp_path / "my_cloud_example-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-cloud-example\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[infrakit.plugins]\nmy-cloud = my_cloud:KIND\n")
    path = f"{EXAMPLE.parent}:{tmp_path}"

    kinds = rig.run("plugin", "kinds", PYTHONPATH=path).stdout
    assert any(line.split()[:2] == ["my-cloud", "my-cloud"] for line in kinds.splitlines())

    rig.start("infrakit", "plugin", "start", "my-cloud", sockets=["my-cloud"], PYTHONPATH=path)
    spec = rig.home / "instance.json"
    spec.write_text(json.dumps({"Properties": {"size": "small"}, "Tags": {"owner": "me"}}))
    assert rig.run("instance", "--name", "my-cloud", "provision", str(spec)).stdout == "vm-1\n"
    rows = rig.lines("instance", "--name", "my-cloud", "describe", "-q", "--tags", "owner=me")
    assert [r.split()[0] for r in rows] == ["vm-1"]
