"""Reading spec files: template or not, Vars sections, --var and --vars-file (real files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrakit.errors import SpecError
from infrakit.specfile.reader import parse_vars, read_spec_file

LIMIT = 16 * 1024 * 1024


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_plain_yaml_or_json_file_is_not_rendered(tmp_path: Path) -> None:
    spec = read_spec_file(write(tmp_path, "a.yaml", "ID: a\nVars: {x: 1}\n"), "spec file", LIMIT)
    assert spec.value == {"ID": "a"} and not spec.is_template  # Vars is dropped
    spec = read_spec_file(write(tmp_path, "a.json", '{"ID": "a"}'), "spec file", LIMIT)
    assert spec.value == {"ID": "a"} and spec.document.format == "json"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (  # a YAML template that does not parse before rendering: Vars cut out of the text
            "Vars:\n  size: 3\n  zone: a # comment\nID: g-{{ zone }}\nSize: {{ size }}\n",
            {"ID": "g-a", "Size": 3},
        ),
        ("vars: {size: 2}\nID: x\nSize: {{ size }}\n", {"ID": "x", "Size": 2}),
        (  # a JSON template whose {{ }} are in strings parses as it is
            '{"Vars": {"size": 4}, "ID": "x", "Size": "{{ size }}"}',
            {"ID": "x", "Size": "4"},
        ),
        (  # a JSON template that does not parse: the "Vars" object found in the text
            '{"ID": "x", "Vars": {"size": 5, "s": "a}b"}, "Size": {{ size }}, "S": "{{ s }}"}',
            {"ID": "x", "Size": 5, "S": "a}b"},
        ),
    ],
)
def test_vars_sections(tmp_path: Path, text: str, value: object) -> None:
    name = "t.json" if text.startswith("{") else "t.yaml"
    spec = read_spec_file(write(tmp_path, name, text), "spec file", LIMIT)
    assert spec.value == value and spec.is_template


def test_var_flags_win_over_vars_files_over_the_vars_section(tmp_path: Path) -> None:
    text = "Vars: {a: spec, b: spec, c: spec}\nv: '{{ a }} {{ b }} {{ c }}'\n"
    vars_file = write(tmp_path, "vars.yaml", "b: file\nc: file\n")
    variables = parse_vars(["c=flag"], [vars_file], LIMIT)
    spec = read_spec_file(write(tmp_path, "t.yaml", text), "spec file", LIMIT, variables)
    assert spec.value == {"v": "spec file flag"}


@pytest.mark.parametrize(
    ("pairs", "files", "message"),
    [
        (["novalue"], [], "--var 'novalue': expected KEY=VALUE, e.g. --var region=eu-west-1"),
        (["=x"], [], "--var '=x': expected KEY=VALUE"),
        ([], ["list.yaml"], "vars file {d}/list.yaml: expected a map of names to values"),
        ([], ["missing.yaml"], "vars file {d}/missing.yaml does not exist"),
        ([], ["bad.yaml"], "vars file {d}/bad.yaml:1:4: not valid YAML"),
    ],
)
def test_bad_vars_are_one_line(
    tmp_path: Path, pairs: list[str], files: list[str], message: str
) -> None:
    write(tmp_path, "list.yaml", "- a\n")
    write(tmp_path, "bad.yaml", "a: !!binary x\n")
    with pytest.raises(SpecError) as caught:
        parse_vars(pairs, [str(tmp_path / f) for f in files], LIMIT)
    assert str(caught.value).startswith(message.format(d=tmp_path))


def test_a_rendered_text_that_does_not_parse_names_the_rendered_line_and_the_command(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "t.yaml", "a: 1\nb: {{ '[' }}\n")
    with pytest.raises(SpecError) as caught:
        read_spec_file(path, "spec file", LIMIT)
    assert str(caught.value).startswith(f"spec file {path} (rendered):3:1: not valid YAML (")
    assert str(caught.value).endswith(
        f"see the rendered text with `infrakit template render {path}`"
    )


def test_template_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", "ID: x\nSize: {{ size }}\n")
    with pytest.raises(SpecError, match=rf"^{path}:2: undefined variable 'size'"):
        read_spec_file(path, "spec file", LIMIT)


def test_vars_must_be_a_map(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", "Vars: [1]\nID: '{{ x }}'\n")
    with pytest.raises(SpecError, match="Vars must be a map of names to values"):
        read_spec_file(path, "spec file", LIMIT)
