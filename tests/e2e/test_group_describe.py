"""``infrakit group describe`` through the CLI and real sockets: one ``Group.Status`` call with
``Tags`` against infrakit's group controller, printing what DescribeGroup + Status print; and
the fallback to DescribeGroup against a server that does not know the option (an older
infrakit) or has no Status at all (Go InfraKit).

The CLI runs both ways: the fast path (``group describe GID``, no click) and click's command
(``--plugins-dir`` in front sends it there); both must print the same bytes."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from infrakit.cli import reads
from infrakit.spi import group
from infrakit.spi.instance import Description
from infrakit.testing import serve_plugin
from infrakit.testing.processes import run_cli
from tests.e2e.conftest import E2E, EXAMPLES, wait_for
from tests.rpc.wire import http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

UP_SOCKETS = ["group", "instance-file", "flavor-vanilla", "flavor-combo"]
AGO = re.compile(r"observed [0-9.]+s ago")


def head(sock: Path, method: str, params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).encode()
    reply = http(sock, body)
    assert reply.status == 200, reply
    return reply.json()["result"]


def both_ways(env: dict[str, str], plugins: Path, *args: str) -> str:
    """What ``infrakit group describe ARGS`` prints, the same by the fast path and by click."""
    fast = run_cli(["group", "describe", *args], env)
    slow = run_cli(["--plugins-dir", str(plugins), "group", "describe", *args], env)
    assert fast.returncode == slow.returncode == 0, (fast.stderr, slow.stderr)
    assert AGO.sub("observed -", fast.stdout) == AGO.sub("observed -", slow.stdout)
    assert fast.stderr == slow.stderr == ""
    return fast.stdout


def test_one_status_call_prints_describe_groups_table_and_the_status(e2e: E2E) -> None:
    e2e.start("infrakit", "up", str(EXAMPLES / "pets.json"), sockets=UP_SOCKETS)
    sock = e2e.plugins / "group"
    wait_for(lambda: "- converged" in e2e.run("group", "describe", "zk").stdout, what="3 pets")
    # One observation behind both: the rows carry what DescribeGroup lists, in its order.
    listed = head(sock, "Group.DescribeGroup", {"Name": "", "ID": "zk"})["Description"]
    status = head(sock, "Group.Status", {"Name": "", "ID": "zk", "Tags": True})
    assert status["InstancesTagged"] is True
    rows = reads.observation_order(status["Instances"])
    assert [(r["ID"], r["LogicalID"], r["Tags"]) for r in rows] == [
        (d["ID"], d["LogicalID"], d["Tags"]) for d in listed["Instances"]
    ]
    assert {r["LogicalID"] for r in rows} == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}

    text = both_ways(e2e.env, e2e.plugins, "zk")
    table, _, rest = text.partition("\n\n")
    assert table.splitlines() == reads.instance_lines(listed["Instances"], quiet=False)
    assert rest.startswith("Group zk: desired 3, actual 3, healthy -, pending 0, destroying 0")
    assert [line.split()[1] for line in rest.splitlines() if line.startswith("instance-")] == [
        "desired"
    ] * 3  # the status table
    quiet = both_ways(e2e.env, e2e.plugins, "zk", "-q")
    assert quiet.splitlines() == reads.instance_lines(listed["Instances"], quiet=True)
    missing = run_cli(["group", "describe", "nope"], e2e.env)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("Error: Group 'nope' is not being watched")


class OlderGroup:
    """A group plugin as an older infrakit served it: Status rows without tags, whatever the
    options (``status=False``: no Status at all, as Go InfraKit)."""

    def __init__(self) -> None:
        tags = {"infrakit.group": "web", "tier": "front"}
        self.members = [
            Description("instance-22", None, {**tags, "n": "1"}),
            Description("instance-11", "10.0.0.9", {**tags, "n": "2"}),
        ]
        self.asked: list[dict[str, Any]] = []

    async def describe_group(self, id: str) -> group.GroupDescription:
        if id != "web":
            raise KeyError(id)
        return group.GroupDescription(list(self.members), converged=True)

    async def status(self, id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        self.asked.append(dict(options or {}))
        rows = [{"ID": m.id, "Config": "desired", "Health": "-"} for m in self.members]
        return {
            "Desired": 2,
            "Actual": 2,
            "Pending": 0,
            "Destroying": 0,
            "Converged": True,
            "Events": "polling",
            "ObservedAgo": 0.5,
            "Instances": sorted(rows, key=str),
        }

    async def commit_group(self, spec: group.Spec, pretend: bool) -> str:
        return ""

    async def free_group(self, id: str) -> None: ...
    async def destroy_group(self, id: str) -> None: ...
    async def destroy_instances(self, id: str, instances: list[str]) -> None: ...
    async def set_size(self, id: str, size: int) -> None: ...

    async def inspect_groups(self) -> list[group.Spec]:
        return []

    async def size(self, id: str) -> int:
        return 2


class GoGroup(OlderGroup):
    """No Group.Status (Go InfraKit's group plugin)."""

    status = None  # type: ignore[assignment]


@pytest.mark.parametrize("served", [OlderGroup, GoGroup])
async def test_describe_falls_back_to_describe_group(
    served: type[OlderGroup], infrakit_home: Path
) -> None:
    plugin = served()
    plugins = infrakit_home / "plugins"
    plugins.mkdir(mode=0o700, exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "INFRAKIT_HOME": str(infrakit_home),
        "INFRAKIT_PLUGINS_DIR": str(plugins),
    }
    async with serve_plugin(plugin, "group", directory=plugins):
        text = await asyncio.to_thread(both_ways, env, plugins, "web")
    table = text.split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in table] == ["ID", "instance-22", "instance-11"]
    assert table[2].split("\t")[1].strip() == "10.0.0.9"
    assert table[1].endswith("infrakit.group=web,n=1,tier=front")
    if served is GoGroup:
        assert "\n\n" not in text  # no status to show
        return
    assert plugin.asked == [{"tags": True}, {"tags": True}]  # it ignored the option
    assert text.split("\n\n")[1].startswith("Group web: desired 2, actual 2")
