"""JSON or YAML by content, YAML 1.2 with JSON values only, key positions, YAML out (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infrakit._utils.jsonfile import JsonFileError
from infrakit.specfile.documents import (
    MAX_VALUES,
    YamlError,
    dump_yaml,
    is_json_text,
    load_text,
    load_yaml,
    positions_of,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a: yes\nb: no\nc: on\nd: NO", {"a": "yes", "b": "no", "c": "on", "d": "NO"}),  # 1.2
        (
            "t: true\nf: False\nn: ~\ne:\n'null': x",
            {"t": True, "f": False, "n": None, "e": None, "null": "x"},
        ),
        ("a: 010\nb: 0o17\nc: 0x1F\nd: -3\ne: +4", {"a": 10, "b": 15, "c": 31, "d": -3, "e": 4}),
        ("a: 1:30\nb: 2001-12-14\nc: 0b101", {"a": "1:30", "b": "2001-12-14", "c": "0b101"}),
        ("a: 1.5\nb: 1e3\nc: .5\nd: -2.5E-1", {"a": 1.5, "b": 1000.0, "c": 0.5, "d": -0.25}),
        ("a: !!str 5\nb: !!int '7'\nc: !!float 1", {"a": "5", "b": 7, "c": 1.0}),
        ("a: &x [1, 2]\nb: *x", {"a": [1, 2], "b": [1, 2]}),
        ("<<: {a: 1}\nb: 2", {"<<": {"a": 1}, "b": 2}),  # no 1.1 merge keys
        ("- a\n- 'b'\n- \"c\\n\"", ["a", "b", "c\n"]),
        ("", None),
        ("# only a comment\n", None),
        ("Init: |\n  echo one\n  echo two\n", {"Init": "echo one\necho two\n"}),
    ],
)
def test_yaml_is_read_by_the_yaml_12_core_schema_as_json_values(text: str, value: Any) -> None:
    assert load_yaml(text) == value
    json.dumps(load_yaml(text))  # every value is a JSON value


@pytest.mark.parametrize(
    ("text", "problem", "where"),
    [
        (
            "a: !!python/object/apply:os.system ['id']",
            "tag !!python/object/apply:os.system is not allowed",
            (1, 4),
        ),
        ("!!python/name:os.system", "is not allowed", (1, 1)),
        ("a: !!binary aGk=", "tag !!binary is not allowed", (1, 4)),
        ("a: !!timestamp 2001-12-14", "tag !!timestamp is not allowed", (1, 4)),
        ("a: !!set {x}", "tag !!set is not allowed", (1, 4)),
        ("a: !Ref x", "tag !Ref is not allowed", (1, 4)),
        ("a: 1\nb:\n  c: 2\n  c: 3", "key 'c' appears twice", (4, 3)),
        ("1: x", "key '1' reads as a number, but keys are strings; quote it", (1, 1)),
        ("true: x", "reads as a boolean", (1, 1)),
        ("~: x", "reads as null", (1, 1)),
        ("? [a]\n: 1", "a key must be a plain string", (1, 3)),
        ("a: .inf", "JSON has no infinity or NaN", (1, 4)),
        ("a: .nan", "JSON has no infinity or NaN", (1, 4)),
        ("a: -.Inf", "JSON has no infinity or NaN", (1, 4)),
        ("a: !!int x", "'x' is not a valid int", (1, 4)),
        ("a: [1, 2\nb: 3", "did not find expected", (2, 2)),
        ("a: 1\n b: 2", "mapping values are not allowed", (2, 3)),
        ("a: 1\n---\nb: 2", "expected a single document", (2, 1)),
    ],
)
def test_yaml_that_could_build_objects_or_is_not_json_is_refused_with_its_place(
    text: str, problem: str, where: tuple[int, int]
) -> None:
    with pytest.raises(YamlError) as caught:
        load_yaml(text)
    assert problem in caught.value.problem
    assert (caught.value.line, caught.value.column) == where


def test_a_billion_laughs_is_refused_before_it_expands() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    with pytest.raises(YamlError, match=f"more than {MAX_VALUES} values"):
        load_yaml("\n".join(lines))


def test_yaml_nested_too_deep_is_refused() -> None:
    with pytest.raises(YamlError, match="nested deeper than 256"):
        load_yaml("[" * 300 + "]" * 300)


@pytest.mark.parametrize(
    ("text", "is_json"),
    [
        ('{"a": 1}', True),
        ("  \n[1]", True),
        ("\ufeff{}", True),
        ("a: 1", False),
        ("- 1", False),
        ("---\na: 1", False),
    ],
)
def test_the_format_is_decided_by_content(text: str, is_json: bool) -> None:
    assert is_json_text(text) is is_json


def test_json_keeps_its_parser_and_messages_and_yaml_errors_name_file_line_col() -> None:
    assert load_text('{"a": 1}', "spec file", "x.yaml").format == "json"
    assert load_text("a: 1", "spec file", "x.json.bak").format == "yaml"
    with pytest.raises(JsonFileError, match=r"^spec file x.json: not valid JSON \(Expecting"):
        load_text("a: 1", "spec file", "x.json")  # a .json file is JSON
    with pytest.raises(
        JsonFileError,
        match=r"^spec file x.yaml:3:6: not valid YAML \(tag !!binary is not allowed",
    ):
        load_text("ID: x\nProperties:\n  a: !!binary aGk=\n", "spec file", "x.yaml")


def test_positions_name_every_key_and_item_case_insensitively() -> None:
    text = "ID: x\nProperties:\n  Allocation:\n    LogicalIDs: [a, b]\n"
    where = positions_of(text)
    assert where[("properties", "allocation")] == (3, 3)
    assert where[("properties", "allocation", "logicalids", "1")] == (4, 21)
    doc = load_text(text, "spec file", "x.yaml")
    assert doc.position(("Properties", "Allocation", "Size")) == (3, 3)  # the closest parent
    json_text = '{"ID": "x",\n "Properties": {"Allocation": {"Size": "5"}}}'
    assert positions_of(json_text)[("properties", "allocation", "size")] == (2, 32)
    assert positions_of("a: [") == {}  # best effort: text that does not parse has none


@pytest.mark.parametrize(
    "value",
    [
        {
            "a": "yes",
            "b": "0o17",
            "c": "010",
            "d": "1:30",
            "e": "",
            "f": "null",
            "g": "1e3",
            "h": "~",
        },
        {"Init": ["echo one", "multi\nline\n"], "Tags": {"tier": "web"}, "n": [1, 2.5, None, True]},
        [{"ID": "x", "Properties": {"Allocation": {"Size": 5}}}],
    ],
)
def test_yaml_out_reads_back_the_same_values(value: Any) -> None:
    text = dump_yaml(value)
    assert load_yaml(text) == value
    import yaml

    assert yaml.safe_load(text) == value  # and a YAML 1.1 reader agrees
