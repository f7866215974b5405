"""Specs as people write them, through the real CLI and daemons: YAML, templates with --var,
every problem at once, and --pretend's diff with --detailed-exitcode."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import E2E, EXAMPLES, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SIX_MISTAKES = (
    '{"ID":"bad","Properties":{"Allocation":{"Size":"5"},"Instance":{"Plugin":"simulator"},'
    '"Flavor":{"Properties":{}},"Updating":{"Duraton":"1s","MaxSurge":"150%"},'
    '"Health":{"CheckInterval":"fast"},"Provisioning":{"DeletePolicy":"Biggest"}}}'
)

PETS_TEMPLATE = textwrap.dedent(
    """\
    # A pet group as a YAML template: vars from the Vars section, --var and --vars-file.
    Vars:
      tier: web
    ID: pets-{{ tier }}
    Properties:
      Allocation:
        LogicalIDs:
    {% for i in range(count | int) %}
          - 10.0.0.{{ i + 1 }}
    {% endfor %}
      Instance:
        Plugin: instance-file
        Properties:
          Note: {{ note | default("v1") }}
      Flavor:
        Plugin: flavor-vanilla
        Properties:
          Init:
            - echo I am {{ instance.LogicalID }} of {{ tier }}
          Tags:
            tier: {{ tier }}
    """
)


@pytest.fixture
def stack(e2e: E2E) -> E2E:
    e2e.start("infrakit-instance-file", sockets=["instance-file"])
    e2e.start("infrakit-group-default", "--poll-interval", "200ms", sockets=["group"])
    e2e.start("infrakit-flavor-vanilla", sockets=["flavor-vanilla"])
    return e2e


def instance_docs(e2e: E2E) -> list[dict]:
    directory = e2e.home / "instances"
    if not directory.exists():
        return []
    return [json.loads(p.read_text()) for p in directory.glob("instance-*")]


def test_validate_reports_the_six_mistakes_at_once_offline(e2e: E2E, tmp_path: Path) -> None:
    bad = e2e.home / "bad.json"
    bad.write_text(SIX_MISTAKES)
    result = e2e.run("group", "validate", str(bad), check=False)  # no plugin is running
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{bad}: 6 problems"
    numbered = [
        line for line in lines[1:] if re.match(rf"  \d\. {re.escape(str(bad))}:1:\d+: ", line)
    ]
    assert len(numbered) == 6, result.stdout
    assert any(
        "Properties.Updating.Duraton" in n and "did you mean Duration?" in n for n in numbered
    )
    assert result.stderr == "Error: 6 problems in 1 of 1 spec files\n"
    good = e2e.run("group", "validate", str(EXAMPLES / "cattle.json"))
    assert good.stdout == f"{EXAMPLES / 'cattle.json'}: group cattle is valid\n"
    doc = json.loads(e2e.run("group", "validate", str(bad), "-o", "json", check=False).stdout)
    assert doc[0]["Valid"] is False and len(doc[0]["Problems"]) == 6
    assert doc[0]["Problems"][0]["Expected"] == "an integer"


def test_commit_of_a_bad_spec_lists_every_problem_and_changes_nothing(stack: E2E) -> None:
    bad = stack.home / "bad.yaml"
    bad.write_text(
        "ID: bad\nProperties:\n  Allocation: {Size: '5'}\n  Instance: {Plugin: instance-file}\n"
        "  Flavor: {Plugin: flavor-vanilla}\n  Updating: {Duraton: 1s}\n"
    )
    result = stack.run("group", "commit", str(bad), check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f'1. {bad}:3:16: Properties.Allocation.Size: expected an integer, found "5"; write 5 without quotes',
        f"2. {bad}:6:14: Properties.Updating.Duraton: expected one of the Updating fields, found "
        "unknown field 'Duraton'; did you mean Duration?",
        f"Error: spec file {bad}: 2 problems; fix them and commit again",
    ]
    assert stack.run("group", "ls", "-q").stdout == ""


@pytest.mark.timeout(180)
def test_a_yaml_template_commits_with_vars_and_pretend_shows_the_diff_and_exit_codes(
    stack: E2E,
) -> None:
    spec = stack.home / "pets.yaml"
    spec.write_text(PETS_TEMPLATE)
    vars_file = stack.home / "vars.yaml"
    vars_file.write_text("count: 2\ntier: db\n")
    args = ("--vars-file", str(vars_file))

    rendered = stack.run("template", "render", str(spec), *args).stdout
    assert "ID: pets-db\n" in rendered and "- 10.0.0.2\n" in rendered
    assert "echo I am {{ instance.LogicalID }} of db" in rendered  # left for the flavor

    new = stack.run(
        "group", "commit", str(spec), *args, "--pretend", "--detailed-exitcode", check=False
    )
    assert new.returncode == 2, new.stderr
    assert new.stdout.splitlines()[0] == "Committing pets-db would involve: Managing 2 instances"
    assert "Rendered spec (" in new.stdout
    assert '  + Properties.Allocation.LogicalIDs[1]: "10.0.0.2"' in new.stdout.splitlines()

    out = stack.run("group", "commit", str(spec), *args).stdout
    assert out == "Committed pets-db: Managing 2 instances\n"

    def two_rendered() -> list[str] | None:
        inits = sorted(d.get("Spec", d).get("Init", "") for d in instance_docs(stack))
        return inits if len(inits) == 2 else None

    inits = wait_for(two_rendered, timeout=30, what="two pets")
    assert inits == ["echo I am 10.0.0.1 of db", "echo I am 10.0.0.2 of db"]

    same = stack.run("group", "commit", str(spec), *args, "--pretend", "--detailed-exitcode")
    assert same.returncode == 0
    assert same.stdout.splitlines()[0] == "Committing pets-db would involve: Noop"
    assert "No change to the spec of pets-db." in same.stdout

    grow = stack.run(
        "group", "commit", str(spec), *args, "--var", "count=3", "--var", "note=v2",
        "--pretend", "--detailed-exitcode", check=False,
    )  # fmt: skip
    assert grow.returncode == 2
    lines = grow.stdout.splitlines()
    assert lines[0].startswith(
        "Committing pets-db would involve: Adding instances with logical IDs 10.0.0.3"
    )
    assert "Changes to the spec of pets-db (committed -> new):" in lines
    assert '  ~ Properties.Instance.Properties.Note: "v1" -> "v2"' in lines
    assert '  + Properties.Allocation.LogicalIDs[2]: "10.0.0.3"' in lines

    plan = json.loads(
        stack.run(
            "group", "commit", str(spec), *args, "--var", "count=3", "--pretend", "-o", "json"
        ).stdout
    )
    assert plan["Sentence"].startswith("Adding instances with logical IDs 10.0.0.3")
    assert plan["Diff"] == [
        {"Op": "+", "Path": "Properties.Allocation.LogicalIDs[2]", "New": "10.0.0.3"}
    ]

    broken = stack.run(
        "group", "commit", str(spec), "--pretend", "--detailed-exitcode", check=False
    )
    assert broken.returncode == 1  # `count` is not set: an error, not a change
    assert broken.stderr.startswith(f"Error: {spec}:8: undefined variable 'count'")
    assert len(inits) == 2 and len(instance_docs(stack)) == 2  # nothing changed


def test_inspect_and_describe_speak_yaml(stack: E2E) -> None:
    stack.run("group", "commit", str(EXAMPLES / "cattle.json"))
    text = stack.run("group", "inspect", "cattle", "-o", "yaml").stdout
    assert text.startswith("ID: cattle\nProperties:\n")
    assert "    Plugin: instance-file\n" in text
    assert stack.run("group", "ls", "-o", "yaml").stdout == "- cattle\n"


def test_validate_with_plugins_asks_each_plugin(stack: E2E) -> None:
    spec = stack.home / "init.yaml"
    spec.write_text(
        "ID: g\nProperties:\n  Allocation: {Size: 1}\n  Instance: {Plugin: instance-file}\n"
        "  Flavor:\n    Plugin: flavor-vanilla\n    Properties: {Init: [1, 2]}\n"
    )
    assert stack.run("group", "validate", str(spec)).returncode == 0  # offline: opaque Properties
    result = stack.run("group", "validate", "--plugins", str(spec), check=False)
    assert result.returncode == 1
    assert result.stdout.splitlines()[1] == (
        f"  1. {spec}: Properties.Flavor: flavor-vanilla (Flavor.Validate): vanilla "
        'Properties.Init: expected an array of strings, e.g. ["echo hello"]'
    )
    missing = stack.home / "missing.yaml"
    missing.write_text(spec.read_text().replace("flavor-vanilla", "flavor-nope"))
    result = stack.run("group", "validate", "--plugins", str(missing), check=False)
    assert "flavor-nope (Flavor.Validate): " in result.stdout and result.returncode == 1
