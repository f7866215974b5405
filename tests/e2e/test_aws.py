"""The aws plugin as a user runs it: `infrakit plugin start group aws vanilla` against a local
moto_server (127.0.0.1 only), a group of 3 EC2 instances that heals, rolls and is destroyed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import E2E, EXAMPLES, wait_for
from tests.plugins.test_aws import MotoServer, ec2, moto, offline_aws_env

__all__ = ["ec2", "moto"]  # fixtures shared with the unit tests

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

#: EC2 publishes no events here, so the group notices out-of-band terminations by polling.
POLL = "200ms"


def live(client: Any, group: str = "workers") -> dict[str, str]:
    """Instance ID -> instance type of the group's instances that are not terminated."""
    pages = client.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": "tag:infrakit.group", "Values": [group]},
            {
                "Name": "instance-state-name",
                "Values": ["pending", "running", "stopping", "stopped"],
            },
        ]
    )
    return {
        i["InstanceId"]: i["InstanceType"]
        for page in pages
        for r in page["Reservations"]
        for i in r["Instances"]
    }


def live_once(client: Any, ok: Callable[[dict[str, str]], bool]) -> Callable[[], Any]:
    """A wait_for predicate: the live instances, once ``ok`` holds for them."""

    def check() -> dict[str, str] | None:
        found = live(client)
        return found if ok(found) else None

    return check


def controller_sees(e2e: E2E, expected: set[str], **env: str) -> bool:
    """The group controller lists exactly ``expected`` and waits for no create.

    An instance terminated before the controller's first look at it counts as a pending create
    until the group's VisibilityTimeout (EC2 is eventually consistent), so the test waits for this.
    """
    doc = json.loads(e2e.run("group", "describe", "workers", "-o", "json", **env).stdout)
    status = doc.get("Status") or {}
    return {i["ID"] for i in doc["Instances"]} == expected and status.get("Pending") == 0


def start_stack(e2e: E2E, endpoint: str) -> None:
    e2e.start(
        "infrakit",
        "plugin",
        "start",
        "group",
        "aws",
        "vanilla",
        "-o",
        f"group.poll-interval={POLL}",
        "-o",
        "group.store=memory",
        "-o",
        f"aws.endpoint-url={endpoint}",
        sockets=["group", "aws", "flavor-vanilla"],
        **offline_aws_env(endpoint),
    )


def test_a_group_of_ec2_instances_heals_rolls_and_is_destroyed(
    ec2: Any, moto: MotoServer, e2e: E2E
) -> None:
    env = offline_aws_env(moto.url)
    start_stack(e2e, moto.url)
    e2e.run("group", "commit", str(EXAMPLES / "aws.json"), **env)
    first = wait_for(live_once(ec2, lambda m: len(m) == 3), what="3 EC2 instances")
    assert set(first.values()) == {"t3.micro"}
    wait_for(lambda: controller_sees(e2e, set(first), **env), what="the controller to see all 3")
    # Compared once the controller has settled on these 3 (right after the first look, EC2's
    # pending/running transitions could still differ between two snapshots).
    described = e2e.lines("instance", "--name", "aws", "describe", "-q")
    assert {line.split()[0] for line in described} == set(first)

    # Terminated behind infrakit's back: the next poll replaces it.
    victim = sorted(first)[0]
    ec2.terminate_instances(InstanceIds=[victim])
    healed = wait_for(
        live_once(ec2, lambda m: len(m) == 3 and victim not in m),
        what="a replacement for the terminated instance",
    )
    assert set(first) - set(healed) == {victim}

    # A new instance type: a rolling update replaces every instance.
    spec = json.loads((EXAMPLES / "aws.json").read_text())
    spec["Properties"]["Instance"]["Properties"]["RunInstancesInput"]["InstanceType"] = "t3.small"
    changed = e2e.home / "aws-small.json"
    changed.write_text(json.dumps(spec))
    e2e.run("group", "commit", str(changed), **env)
    rolled = wait_for(
        live_once(ec2, lambda m: len(m) == 3 and set(m.values()) == {"t3.small"}),
        timeout=60,
        what="a rolling update to t3.small",
    )
    assert not set(rolled) & set(healed)

    e2e.run("group", "destroy", "workers", **env)
    wait_for(lambda: not live(ec2), what="every instance of the group terminated")
    assert "workers" not in e2e.run("group", "ls", **env).stdout


def test_bad_properties_are_refused_at_commit_with_one_line(
    ec2: Any, moto: MotoServer, e2e: E2E
) -> None:
    start_stack(e2e, moto.url)
    spec = json.loads((EXAMPLES / "aws.json").read_text())
    del spec["Properties"]["Instance"]["Properties"]["RunInstancesInput"]["ImageId"]
    bad = e2e.home / "aws-bad.json"
    bad.write_text(json.dumps(spec))
    err = e2e.fails("group", "commit", str(bad), **offline_aws_env(moto.url))
    assert "ImageId missing" in err
    assert live(ec2) == {}
