"""Formatting: InfraKit's tables, infrakit's status lines, the shapes of ``-o json``, and the one
line a failed call prints. Pure formatters are called directly; the commands run in-process
(CliRunner) against plugins served in-process on real sockets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infrakit.cli._common import instance_table
from infrakit.cli.group import status_lines
from infrakit.cli.manager import _members
from infrakit.cli.reads import _unknown_type
from infrakit.spi import instance as spi_instance
from tests.cli.conftest import EXAMPLES, Stack, error_line, invoke
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


# --- pure formatters ----------------------------------------------------------------------------


def test_instance_table_is_infrakits_columns(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"ID": "instance-1", "LogicalID": None, "Tags": {"b": "2", "a": "1"}},
        {"id": "instance-2", "logicalid": "10.0.0.2", "tags": {}, "properties": {"k": [1]}},
    ]
    instance_table(rows, quiet=False)
    assert capsys.readouterr().out.splitlines() == [
        f"{'ID':<30}\t{'LOGICAL':<30}\tTAGS",
        f"{'instance-1':<30}\t{'  -   ':<30}\ta=1,b=2",
        f"{'instance-2':<30}\t{'10.0.0.2':<30}\t",
    ]
    instance_table(rows, quiet=True, properties=True)
    assert capsys.readouterr().out.splitlines() == [
        f"{'instance-1':<30}\t{'  -   ':<30}\ta=1,b=2\tnull",
        f"{'instance-2':<30}\t{'10.0.0.2':<30}\t\t" + '{"k":[1]}',
    ]
    instance_table([], quiet=True)
    assert capsys.readouterr().out == ""


def test_instance_table_prints_tag_values_that_are_not_strings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A third-party plugin may send numbers or null as tag values; the row still prints.
    instance_table([{"ID": "i-1", "Tags": {"z": 1, "a": None, "m": "x"}}], quiet=True)
    assert capsys.readouterr().out.splitlines() == [f"{'i-1':<30}\t{'  -   ':<30}\ta=None,m=x,z=1"]


STATUS: dict[str, Any] = {
    "Desired": 3,
    "Actual": 3,
    "Healthy": 2,
    "HealthChecked": True,
    "Pending": 0,
    "Destroying": 1,
    "Converged": True,
    "Events": "on",
    "ObservedAgo": 0.25,
    "Instances": [],
    "Decisions": [],
}


@pytest.mark.parametrize(
    ("changes", "lines"),
    [
        (
            {},
            [
                "Group web: desired 3, actual 3, healthy 2, pending 0, destroying 1 - converged "
                "(instance events: on, observed 0.2s ago)"
            ],
        ),
        (
            {"HealthChecked": False, "Converged": False, "ObservedAgo": None},
            [
                "Group web: desired 3, actual 3, healthy -, pending 0, destroying 1 - converging "
                "(instance events: on)"
            ],
        ),
        (
            {"Actual": None, "ActualUnknown": "describe failed: boom"},
            ["Actual unknown: describe failed: boom"],
        ),
        (
            {"Updating": {"Replaced": 1, "Total": 3, "Canary": 1, "Promoted": False}},
            ["Updating: rolling, 1 of 3 replaced, canary 1 (not promoted)"],
        ),
        (
            {"Updating": {"Replaced": 0, "Total": 3, "Paused": True, "Reason": "paused by user"}},
            ["Updating: paused, 0 of 3 replaced - paused by user"],
        ),
        (
            {"Updating": {"Replaced": 2, "Total": 3, "Failed": True}},
            ["Updating: failed, 2 of 3 replaced"],
        ),
        (
            {"Degraded": {"Reason": "3 consecutive failed creates"}, "Backoff": 4.0},
            ["Degraded: 3 consecutive failed creates"],
        ),
        ({"Backoff": 4.04}, ["Backoff: next create in 4.0s"]),
        ({"ShortCircuit": "too many unhealthy"}, ["Remediation: too many unhealthy"]),
        ({"LastError": "quota"}, ["Last error: quota"]),
        (
            {
                "Instances": [
                    {"ID": "i-1", "Config": "desired", "Health": "healthy", "Note": ""},
                    {"ID": "i-2", "Config": "old", "Health": "-", "Destroying": True},
                ],
                "Decisions": ["create 1"],
            },
            [
                f"{'INSTANCE':<30}\t{'CONFIG':<8}\t{'HEALTH':<10}\tNOTE",
                f"{'i-1':<30}\t{'desired':<8}\t{'healthy':<10}\t",
                f"{'i-2':<30}\t{'old':<8}\t{'-':<10}\tdestroying",
                "  - create 1",
            ],
        ),
    ],
)
def test_status_lines(changes: dict[str, Any], lines: list[str]) -> None:
    shown = status_lines("web", {**STATUS, **changes})
    if changes and "Converged" not in changes:
        assert shown[1:] == lines  # the summary line first, then what the change adds
    else:
        assert shown == lines


def test_manager_members_line() -> None:
    members = [
        {"ID": "a", "Location": "tcp://127.0.0.1:1", "Leading": True},
        {"ID": "b", "Location": ""},
    ]
    assert _members(members) == "a tcp://127.0.0.1:1 (leader), b"
    assert _members([]) == "none"
    assert _members(None) == "unknown (the election backend did not answer)"


@pytest.mark.parametrize(
    ("listed", "sub", "message"),
    [
        (
            [{"Name": "big"}, {"Name": "small"}],
            "",
            "plugin cloud has no default Instance object (its types: big, small); name one as "
            "--name cloud/TYPE",
        ),
        (
            [{"Name": ""}, {"Name": "big"}],
            "huge",
            "plugin cloud has no Instance type 'huge' (its types: big); use --name cloud/TYPE "
            "with one of them, or --name cloud for its default object",
        ),
        (
            [{"Name": ""}],
            "x",
            "plugin cloud serves one Instance object and no type 'x'; drop the /x: --name cloud",
        ),
        (
            None,
            "x",
            "plugin cloud has no Instance type 'x' (it answered no-plugin:x); --name takes PLUGIN "
            "or PLUGIN/TYPE: check the type, or use --name cloud for its default object",
        ),
    ],
)
def test_unknown_type_messages(listed: list[dict[str, str]] | None, sub: str, message: str) -> None:
    objects = None if listed is None else {str(spi_instance.INTERFACE): listed}
    assert (
        _unknown_type(objects, spi_instance.INTERFACE, "cloud", sub, f"no-plugin:{sub}") == message
    )


# --- commands against plugins served in-process -------------------------------------------------


def converged(stack: Stack) -> dict[str, Any] | None:
    doc: dict[str, Any] = stack.json("group", "describe", "cattle")
    return doc if doc["Converged"] and len(doc["Instances"]) == 5 else None


def test_group_commands_print_infrakits_lines_and_json_shapes(stack: Stack) -> None:
    spec = str(EXAMPLES / "cattle.json")
    pretend = stack.cli("group", "commit", spec, "--pretend").splitlines()
    assert pretend[0] == "Committing cattle would involve: Managing 5 instances"
    assert "  + Properties.Allocation.Size: 5" in pretend  # then the diff: a new group's fields
    assert stack.cli("group", "commit", spec) == "Committed cattle: Managing 5 instances\n"
    doc = wait_for(lambda: converged(stack), what="cattle converged")
    assert set(doc) == {"ID", "Instances", "Converged", "Status"}
    assert doc["ID"] == "cattle"
    assert {"ID", "LogicalID", "Tags"} <= set(doc["Instances"][0])
    assert doc["Status"]["Desired"] == 5 and doc["Status"]["Actual"] == 5
    assert json.loads(stack.cli("group", "commit", spec, "-o", "json")) == {
        "ID": "cattle",
        "Details": "Noop",  # committed already: nothing to do
        "Pretend": False,
    }

    text = stack.cli("group", "describe", "cattle").splitlines()
    assert text[0] == f"{'ID':<30}\t{'LOGICAL':<30}\tTAGS"
    assert len(text[1:6]) == 5 and all(row.startswith("instance-") for row in text[1:6])
    assert text[6] == ""
    assert text[7].startswith("Group cattle: desired 5, actual 5, healthy -, pending 0")
    quiet = stack.cli("group", "describe", "cattle", "-q").splitlines()
    assert quiet == text[1:6]

    assert stack.cli("group", "ls") == "ID\ncattle\n"
    assert stack.cli("group", "ls", "-q") == "cattle\n"
    assert stack.json("group", "ls") == ["cattle"]
    assert stack.json("group", "inspect", "cattle")["ID"] == "cattle"
    assert stack.cli("group", "scale", "cattle") == "Group cattle at 5 instances\n"
    assert stack.json("group", "scale", "cattle") == {"ID": "cattle", "Size": 5}
    assert stack.json("group", "scale", "cattle", "4") == {"ID": "cattle", "Size": 4, "Previous": 5}
    assert stack.cli("group", "scale", "cattle", "5") == "Group cattle at 4 instances, scale to 5\n"


def test_describe_after_a_rolling_update_counts_healthy_as_its_rows_and_json_do(
    stack: Stack,
) -> None:
    """Without a Health section the rolling update still asks the flavor about each new
    instance: the header, the rows and ``-o json`` all say so, from one source."""
    stack.cli("group", "commit", str(EXAMPLES / "cattle.json"))
    wait_for(lambda: converged(stack), what="cattle converged")
    assert "rolling update" in stack.cli("group", "commit", str(EXAMPLES / "cattle2.json"))

    def updated() -> dict[str, Any] | None:
        doc: dict[str, Any] = stack.json("group", "describe", "cattle")
        status = doc["Status"]
        done = doc["Converged"] and status["Actual"] == 10 and status["Updating"] is None
        return doc if done else None

    status = wait_for(updated, timeout=30, what="the rolling update done")["Status"]
    rows = [r["Health"] for r in status["Instances"]]
    assert rows == ["healthy"] * 10
    assert status["Healthy"] == 10 and status["HealthChecked"] is True
    header = [
        line for line in stack.cli("group", "describe", "cattle").splitlines() if "Group" in line
    ]
    assert header[0].startswith("Group cattle: desired 10, actual 10, healthy 10, pending 0")


def test_instance_and_flavor_commands(stack: Stack, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"Properties": {"n": 1}, "Tags": {"tier": "web"}}))
    iid = stack.cli("instance", "--name", "instance-file", "provision", str(spec)).strip()
    assert iid.startswith("instance-")
    rows = stack.cli("instance", "describe", "--name", "instance-file", "-q").splitlines()
    assert rows == [f"{iid:<30}\t{'  -   ':<30}\ttier=web"]
    [found] = stack.json("instance", "--name", "instance-file", "describe", "--tags", "tier=web")
    assert found["ID"] == iid and found["Tags"] == {"tier": "web"}
    assert stack.json("instance", "--name", "instance-file", "describe", "--tags", "tier=db") == []
    info = stack.json("instance", "--name", "instance-file", "info")
    assert set(info) == {"Vendor", "Implements", "Properties"}
    import infrakit

    assert info["Vendor"]["Version"] == infrakit.__version__
    assert stack.cli("instance", "--name", "instance-file", "destroy", iid) == f"destroyed {iid}\n"

    props = tmp_path / "props.json"
    props.write_text(json.dumps({"Init": ["echo hi"], "Tags": {"a": "b"}}))
    assert (
        stack.cli("flavor", "--name", "flavor-vanilla", "validate", str(props)) == "validate:ok\n"
    )
    prepared = json.loads(
        stack.cli("flavor", "--name", "flavor-vanilla", "prepare", str(props), str(spec))
    )
    assert prepared["Tags"] == {"tier": "web", "a": "b"} and prepared["Init"] == "echo hi"
    assert stack.json("flavor", "--name", "flavor-vanilla", "healthy", "i-1", "i-2") == {
        "i-1": "healthy",
        "i-2": "healthy",
    }
    assert stack.cli("flavor", "--name", "flavor-vanilla", "healthy", "i-1") == (
        f"{'i-1':<30}\thealthy\n"
    )


def test_plugin_ls_table_and_json(stack: Stack) -> None:
    rows = stack.json("plugin", "ls")
    assert [r["Name"] for r in rows] == ["flavor-vanilla", "group", "instance-file"]
    assert set(rows[0]) == {"Name", "Interfaces", "Listen", "Live"}
    by_name = {r["Name"]: r for r in rows}
    assert by_name["instance-file"]["Interfaces"] == ["Event/0.1.1", "Instance/0.6.1"]
    assert by_name["group"]["Interfaces"] == ["Event/0.1.1", "Group/0.1.1", "Metadata/0.1.1"]
    assert all(r["Live"] for r in rows)
    text = stack.cli("plugin", "ls").splitlines()
    assert text[0].split() == ["NAME", "INTERFACE", "LISTEN"]
    assert text[1].split()[0] == "flavor-vanilla" and "(stale" not in text[1]
    assert stack.cli("plugin", "ls", "-q") == "flavor-vanilla\ngroup\ninstance-file\n"


def test_failed_calls_are_one_error_line(stack: Stack, tmp_path: Path) -> None:
    assert error_line(invoke("group", "describe", "nosuch")) == (
        "Group 'nosuch' is not being watched (groups: none); commit it first with "
        "`infrakit group commit FILE`"
    )
    assert error_line(invoke("group", "inspect", "nosuch")) == (
        "Group nosuch is not being watched; see `infrakit group ls`"
    )
    assert error_line(invoke("group", "--name", "nope", "ls")).startswith(
        "plugin not found: nope (not running: no socket nope in "
    )
    assert error_line(invoke("instance", "--name", "instance-file/sub", "describe")) == (
        "plugin instance-file serves one Instance object and no type 'sub'; drop the /sub: "
        "--name instance-file"
    )
    gone = error_line(invoke("instance", "--name", "instance-file", "destroy", "instance-9"))
    assert "instance-9" in gone and "infrakit instance --name instance-file describe" in gone
    assert "plain group controller, not a manager" in error_line(invoke("manager", "status"))


def test_no_plugins_is_said_on_stderr_and_json_stays_a_list(plugin_dir: Path) -> None:
    result = invoke("plugin", "ls")
    assert result.exit_code == 0 and result.stdout.splitlines() == [
        f"{'NAME':<20}{'INTERFACE':<30}LISTEN"
    ]
    assert result.stderr.startswith(f"no plugins running in {plugin_dir}; start them with")
    result = invoke("plugin", "ls", "-o", "json")
    assert result.exit_code == 0 and json.loads(result.stdout) == [] and result.stderr == ""
