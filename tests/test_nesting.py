"""The JSON depth limit shared by spec files, request bodies and parsed specs (a table test)."""

from __future__ import annotations

import json

import pytest

from infrakit._utils.nesting import MAX_DEPTH, deeper_than, may_be_deeper_than


def arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("text", "limit", "deeper"),
    [
        ("1", 0, False),
        ('"[[[["', 1, False),  # brackets in strings do not nest
        ("[]", 0, True),
        ("[]", 1, False),
        ('{"a": [1]}', 1, True),
        ('{"a": [1]}', 2, False),
        ('[[], [[]], {"b": {"c": {}}}]', 4, False),
        ('[[], [[]], {"b": {"c": {}}}]', 3, True),
        (arrays(MAX_DEPTH), MAX_DEPTH, False),
        (arrays(MAX_DEPTH + 1), MAX_DEPTH, True),
        (arrays(900), MAX_DEPTH, True),
    ],
)
def test_depth_counts_nested_containers(text: str, limit: int, deeper: bool) -> None:
    assert deeper_than(json.loads(text), limit) is deeper


def test_the_quick_test_never_misses_a_deep_document() -> None:
    shallow = json.dumps({"k": list(range(1000)), "s": "x" * 10_000})
    assert not may_be_deeper_than(shallow) and not may_be_deeper_than(shallow.encode())
    for text in (arrays(MAX_DEPTH + 1), '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)):
        assert may_be_deeper_than(text) and may_be_deeper_than(text.encode())
