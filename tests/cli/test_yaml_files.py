"""YAML where JSON was read, and -o yaml, through the CLI in-process against real sockets."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Stack, error_line, invoke


def test_instance_and_flavor_files_may_be_yaml(stack: Stack, tmp_path: Path) -> None:
    props = tmp_path / "props.yaml"
    props.write_text("Note: from YAML\n")
    assert (
        stack.cli("instance", "--name", "instance-file", "validate", str(props)) == "validate:ok\n"
    )
    flavor = tmp_path / "flavor.yaml"
    flavor.write_text("Init:\n  - echo {{ instance.LogicalID }}\nTags: {tier: web}\n")
    assert (
        stack.cli("flavor", "--name", "flavor-vanilla", "validate", str(flavor)) == "validate:ok\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("Note: !!binary aGk=\n")
    line = error_line(invoke("instance", "--name", "instance-file", "validate", str(bad)))
    assert line.startswith(
        f"properties file {bad}:1:7: not valid YAML (tag !!binary is not allowed"
    )


def test_a_yaml_spec_commits_and_reads_back_as_yaml(stack: Stack, tmp_path: Path) -> None:
    spec = tmp_path / "cattle.yaml"
    spec.write_text(
        "ID: cattle\nProperties:\n  Allocation: {Size: 2}\n  Instance: {Plugin: instance-file}\n"
        "  Flavor: {Plugin: flavor-vanilla, Properties: {Init: [echo hi]}}\n"
    )
    assert stack.cli("group", "commit", str(spec), "-o", "yaml") == (
        "ID: cattle\nDetails: Managing 2 instances\nPretend: false\n"
    )
    inspected = stack.cli("group", "inspect", "cattle", "-o", "yaml")
    assert inspected.startswith("ID: cattle\nProperties:\n  Instance:\n    Plugin: instance-file\n")
    assert stack.cli("group", "scale", "cattle", "-o", "yaml") == "ID: cattle\nSize: 2\n"


def test_template_render_prints_text_or_converts(tmp_path: Path) -> None:
    spec = tmp_path / "t.yaml"
    spec.write_text("Vars: {n: 2}\nID: g{{ n }}\nList: [{{ n }}, {{ var('m') }}]\n")
    out = invoke("template", "render", str(spec), "--var", "m=x")
    assert out.exit_code == 0 and out.stdout == "Vars: {n: 2}\nID: g2\nList: [2, x]\n"
    out = invoke("template", "render", str(spec), "--var", "m=3", "-o", "json")
    assert out.stdout == '{\n  "ID": "g2",\n  "List": [\n    2,\n    3\n  ]\n}\n'
    assert error_line(invoke("template", "render", str(spec))).startswith(
        f"{spec}:3: var 'm' is not set (vars set: n); pass --var m=VALUE"
    )
