"""The field-by-field spec diff (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from infrakit.specfile.diff import diff, format_changes


@pytest.mark.parametrize(
    ("old", "new", "lines"),
    [
        ({"a": 1}, {"a": 1}, []),
        ({"a": 1}, {"a": 2}, ["  ~ a: 1 -> 2"]),
        ({"a": 1}, {"a": "1"}, ['  ~ a: 1 -> "1"']),
        ({"a": 1}, {"a": 1.0}, ["  ~ a: 1 -> 1.0"]),
        ({}, {"a": {"b": [1, 2]}}, ["  + a.b[0]: 1", "  + a.b[1]: 2"]),
        ({"a": {"b": 1}}, {}, ["  - a.b: 1"]),
        ({"a": {}}, {"a": {}}, []),
        ({}, {"a": {}}, ["  + a: {}"]),
        ({"Init": ["x"]}, {"Init": ["x", "y"]}, ['  + Init[1]: "y"']),
        ({"Init": ["x", "y"]}, {"Init": ["z"]}, ['  ~ Init[0]: "x" -> "z"', '  - Init[1]: "y"']),
        ({"a": [1]}, {"a": {"b": 1}}, ['  ~ a: [1] -> {"b": 1}']),
        ({"a": None}, {"a": 0}, ["  ~ a: null -> 0"]),
        ({"x": 1, "a": 1}, {"a": 1, "b": 2}, ["  + b: 2", "  - x: 1"]),
    ],
)
def test_diff_lines(old: Any, new: Any, lines: list[str]) -> None:
    assert format_changes(diff(old, new)) == lines


def test_paths_wire_shapes_and_colour() -> None:
    changes = diff({"P": {"A": {"S": 5}}}, {"P": {"A": {"S": 10}, "L": [1]}})
    assert [c.dotted for c in changes] == ["P.A.S", "P.L[0]"]
    assert [c.to_wire() for c in changes] == [
        {"Op": "~", "Path": "P.A.S", "Old": 5, "New": 10},
        {"Op": "+", "Path": "P.L[0]", "New": 1},
    ]
    painted = format_changes(changes, lambda text, colour: f"<{colour}>{text}")
    assert painted == ["<yellow>  ~ P.A.S: 5 -> 10", "<green>  + P.L[0]: 1"]
    long = format_changes(diff({}, {"a": "x" * 500}))[0]
    assert len(long) < 220 and long.endswith("...")
