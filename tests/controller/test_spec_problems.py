"""Every problem of a spec at once: path, expected, found, hint, did-you-mean (pure)."""

from __future__ import annotations

import json

import pytest

from infrakit.controller.group.spec import parse_spec, spec_problems
from infrakit.errors import SpecError
from infrakit.spi import group

SIX_MISTAKES = json.loads(
    '{"ID":"bad","Properties":{"Allocation":{"Size":"5"},"Instance":{"Plugin":"simulator"},'
    '"Flavor":{"Properties":{}},"Updating":{"Duraton":"1s","MaxSurge":"150%"},'
    '"Health":{"CheckInterval":"fast"},"Provisioning":{"DeletePolicy":"Biggest"}}}'
)


def problems(doc: dict) -> list[str]:
    return [p.line() for p in spec_problems(group.spec_from_wire(doc))]


def test_the_issues_six_mistakes_are_all_reported_in_one_run() -> None:
    assert problems(SIX_MISTAKES) == [
        'Properties.Allocation.Size: expected an integer, found "5"; write 5 without quotes',
        "Properties.Updating.MaxSurge: expected a count of 0 or more, or a percentage from 0% "
        'to 100%, found "150%"; write e.g. 1 or "25%"',
        "Properties.Updating.Duraton: expected one of the Updating fields, found unknown field "
        "'Duraton'; did you mean Duration?",
        "Properties.Health.CheckInterval: expected a duration such as 500ms, 10s or 1m30s, or a "
        'number of seconds, found "fast"; write it like "10s"',
        "Properties.Provisioning.DeletePolicy: expected one of Newest, Oldest, Random, found "
        '"Biggest"; use one of Newest, Oldest, Random',
        "Properties.Flavor.Plugin: expected the name of the flavor plugin, found nothing; name "
        "it, e.g. flavor-vanilla",
    ]


def test_a_commit_is_refused_with_infrakits_message_first_and_every_other_after_it() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(group.spec_from_wire(SIX_MISTAKES))
    message = str(caught.value)
    assert message.startswith(
        "Invalid properties: Properties.Allocation.Size: Input should be a valid integer, got '5'"
    )
    assert " (and 5 more: 2. Properties.Updating.MaxSurge" in message and "6. " in message


@pytest.mark.parametrize(
    ("properties", "line"),
    [
        (
            {"Allocation": {"Size": 1}, "Updating": {"MaxSurg": 2}},
            "Properties.Updating.MaxSurg: expected one of the Updating fields, found unknown field 'MaxSurg'; did you mean MaxSurge?",
        ),
        (
            {"Allocation": {"Size": 1}, "Health": {"CheckIntervl": "1s"}},
            "did you mean CheckInterval?",
        ),
        (
            {"Allocation": {"Size": 1}, "Provisioning": {"DeletePolicy": "newest"}},
            "did you mean Newest?",
        ),
        (
            {"Allocation": {"Size": 1}, "Provisioning": {"MaxParallel": 0}},
            "Properties.Provisioning.MaxParallel: expected a number at least 1, found 0; use 1 or more",
        ),
        (
            {"Allocation": {"Size": -1}},
            "Properties.Allocation.Size: expected a number at least 0, found -1",
        ),
        (
            {"Allocation": {"Size": 1}, "Updating": {"AutoRollback": "yes"}},
            'Properties.Updating.AutoRollback: expected true or false, found "yes"',
        ),
        (
            {"Allocation": {"LogicalIDs": "a"}},
            'Properties.Allocation.LogicalIDs: expected a list, found "a"',
        ),
        (
            {"Allocation": [1]},
            "Properties.Allocation: expected an object (a map of keys), found [1]",
        ),
        (
            {"Allocaton": {"Size": 1}},
            "Properties.Allocaton: expected one of the Properties sections, found unknown field 'Allocaton'; did you mean Allocation?",
        ),
        (
            {"Allocation": {"LogicalIDs": ["a", "", "a"]}},
            "Properties.Allocation.LogicalIDs[2]: expected unique logical IDs, found 'a' a second time; remove the duplicate",
        ),
        (
            {
                "Allocation": {"Size": 1},
                "Provisioning": {"BackoffInitial": "1m", "BackoffMax": "1s"},
            },
            "Properties.Provisioning.BackoffMax: expected at least BackoffInitial (1m0s), found 1s",
        ),
    ],
)
def test_each_problem_says_where_what_was_expected_found_and_what_to_do(
    properties: dict, line: str
) -> None:
    doc = {
        "ID": "g",
        "Properties": {"Instance": {"Plugin": "i"}, "Flavor": {"Plugin": "f"}, **properties},
    }
    assert any(found.startswith(line) or line in found for found in problems(doc)), problems(doc)


def test_a_section_that_does_not_parse_skips_only_the_checks_that_need_it() -> None:
    doc = {"ID": "g", "Properties": {"Allocation": {"Size": "x"}, "Instance": {}, "Flavor": {}}}
    lines = problems(doc)
    assert len(lines) == 3  # Size, both plugins; not "Allocation must not be blank" as well
    assert not any("must not be blank" in p for p in lines)


def test_a_valid_spec_has_no_problem_and_keys_match_case_insensitively() -> None:
    doc = {
        "id": "g",
        "properties": {
            "allocation": {"size": 2},
            "instance": {"plugin": "i"},
            "flavor": {"plugin": "f"},
        },
    }
    assert problems(doc) == []
    assert parse_spec(group.spec_from_wire(doc)).size == 2


def test_blank_id_is_first_and_alone_when_it_is_the_only_problem() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(
            group.Spec(
                "",
                {"Allocation": {"Size": 1}, "Instance": {"Plugin": "i"}, "Flavor": {"Plugin": "f"}},
            )
        )
    assert str(caught.value) == 'Group ID must not be blank (set "ID" at the top of the spec)'
