"""The group controller against a misbehaving provider, through the CLI: the simulator's faults.

Each test runs a simulator daemon (``infrakit plugin start simulator``, state in a file so the test
can count *every* instance, including those DescribeInstances does not show yet) and a group
controller daemon with a short poll, commits examples/simulator.json with its faults replaced, and
asserts what a user would see in ``infrakit group describe``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import E2E, EXAMPLES, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

GROUP = "simulated"


class Stack:
    """A simulator and a group controller in their own processes, and helpers to look at them."""

    def __init__(self, e2e: E2E) -> None:
        self.e2e = e2e
        self.state = e2e.home / "simulator-state.json"
        self.control = e2e.home / "simulator-control.json"
        self.simulator = e2e.start(
            "infrakit",
            "plugin",
            "start",
            "simulator",
            "-o",
            f"simulator.state={self.state}",
            "-o",
            f"simulator.control={self.control}",
            "-o",
            "simulator.control-poll=50ms",
            "-o",
            "simulator.seed=1",
            sockets=["simulator"],
        )
        e2e.start("infrakit-group-default", "--poll-interval", "200ms", sockets=["group"])

    def commit(
        self, faults: dict[str, Any], size: int = 3, **sections: dict[str, Any]
    ) -> dict[str, Any]:
        spec = json.loads((EXAMPLES / "simulator.json").read_text())
        props = spec["Properties"]
        props["Allocation"] = {"Size": size}
        props["Instance"]["Properties"]["Faults"] = faults
        props.pop("Health")
        props.update(sections)
        path = self.e2e.home / "spec.json"
        path.write_text(json.dumps(spec))
        self.e2e.run("group", "commit", str(path))
        return spec

    def all_instances(self) -> list[dict[str, Any]]:
        """Every instance the simulator holds, visible in DescribeInstances or not yet."""
        try:
            return list(json.loads(self.state.read_text())["Instances"])
        except (FileNotFoundError, ValueError):  # not written yet
            return []

    def status(self) -> dict[str, Any]:
        out = self.e2e.run("group", "describe", GROUP, "-o", "json").stdout
        return dict(json.loads(out)["Status"])

    def describe(self) -> str:
        return self.e2e.run("group", "describe", GROUP).stdout

    def members(self) -> list[str]:
        return [line.split()[0] for line in self.e2e.lines("group", "describe", GROUP, "-q")]

    def set_control(self, document: dict[str, Any]) -> None:
        temp = self.control.with_name(self.control.name + ".tmp")
        temp.write_text(json.dumps(document))
        temp.replace(self.control)

    def control_applied(self) -> bool:
        return f"control file {self.control} applied" in self.simulator.output()

    def provision_failures(self) -> int:
        return self.simulator.output().count("injected Provision failure")


@pytest.fixture
def stack(e2e: E2E) -> Stack:
    return Stack(e2e)


def test_a_provider_failing_every_provision_degrades_the_group_after_bounded_attempts(
    stack: Stack,
) -> None:
    stack.commit(
        {"ProvisionFailureRate": 1},
        Provisioning={
            "MaxFailures": 3,
            "BackoffInitial": "20ms",
            "BackoffMax": "50ms",
            "CoolDown": "10m",
        },
    )
    wait_for(lambda: stack.status()["Degraded"], what="the group to turn Degraded")
    text = stack.describe()
    assert "Degraded: 3 consecutive failed creates" in text
    assert "injected Provision failure" in text
    assert "infrakit group reset simulated" in text

    # Bounded: a Degraded group creates nothing more, however many passes run (poll is 200ms).
    attempts = stack.provision_failures()
    assert attempts == 3
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert stack.status()["Degraded"]["Failures"] == 3
        time.sleep(0.1)
    assert stack.provision_failures() == attempts
    assert stack.all_instances() == []

    # The user fixes the provider (here: lifts the fault for this group) and resets the breaker.
    stack.set_control({"Groups": {GROUP: {"ProvisionFailureRate": 0}}})
    wait_for(stack.control_applied, what="the simulator to apply its control file")
    stack.e2e.run("group", "reset", GROUP)
    wait_for(lambda: len(stack.members()) == 3, what="3 instances after the reset")
    assert stack.status()["Degraded"] is None


def test_describe_lag_never_makes_the_controller_create_duplicates(stack: Stack) -> None:
    size = 5
    spec = stack.commit({"DescribeLag": "2s"}, size=size)
    max_surge = spec["Properties"].get("Updating", {}).get("MaxSurge", 1)
    seen_invisible = False
    most = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        count = len(stack.all_instances())
        most = max(most, count)
        assert count <= size + max_surge, f"{count} instances for a group of {size}"
        if count and not stack.members():
            seen_invisible = True  # created, but DescribeInstances does not show them yet
        if "converged" in stack.describe():
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"not converged within 30s:\n{stack.describe()}")
    assert seen_invisible, "the lag never showed; the test would prove nothing"
    assert len(stack.members()) == size
    assert len(stack.all_instances()) == size
    assert most == size


def test_instances_dying_right_after_creation_trip_the_crash_loop_breaker(stack: Stack) -> None:
    stack.commit(
        {"Lifetime": "200ms"},
        size=2,
        Provisioning={"MaxFailures": 2, "CrashLoopWindow": "30s", "CoolDown": "10m"},
    )
    wait_for(lambda: stack.status()["Degraded"], timeout=30, what="the crash-loop breaker")
    text = stack.describe()
    assert "Degraded: 2 consecutive failed creates" in text
    assert "(crash loop?)" in text
    assert stack.status()["Degraded"]["Failures"] == 2


def test_unhealthy_instances_are_replaced_when_the_group_checks_health(stack: Stack) -> None:
    stack.commit(
        {},
        size=2,
        Health={"CheckInterval": "100ms", "UnhealthyTimeout": "100ms"},
    )
    wait_for(
        lambda: stack.status()["Healthy"] == 2 and "converged" in stack.describe(),
        what="2 healthy instances",
    )
    sick, well = stack.members()
    stack.set_control({"Health": {sick: "unhealthy"}})

    def replaced() -> bool:
        members = stack.members()
        return len(members) == 2 and sick not in members and well in members

    wait_for(replaced, what="the unhealthy instance to be replaced")
    assert sick not in {i["ID"] for i in stack.all_instances()}
    wait_for(lambda: stack.status()["Healthy"] == 2, what="the replacement to be healthy")


def test_a_restarted_simulator_keeps_its_instances_and_the_group_adopts_them(
    stack: Stack,
) -> None:
    stack.commit({}, size=3)
    wait_for(lambda: "converged" in stack.describe(), what="3 instances")
    before = set(stack.members())
    stack.simulator.stop()
    stack.simulator.start()
    wait_for(lambda: "converged" in stack.describe(), what="converged again")
    assert set(stack.members()) == before  # adopted, nothing re-created
    assert Path(stack.state).exists()


def test_a_hung_provision_times_out_as_a_failed_create(stack: Stack) -> None:
    stack.commit(
        {"Hang": ["Provision"]},
        size=1,
        Provisioning={"ProvisionTimeout": "300ms", "MaxFailures": 1, "CoolDown": "10m"},
    )
    wait_for(lambda: stack.status()["Degraded"], what="the timed-out create to count")
    assert "Provision did not finish within 0.3s" in stack.describe()
    # Lifting the hang lets the abandoned call finish, as a slow cloud would: the instance it
    # creates carries the group's tags, so the controller adopts it instead of leaking it.
    stack.set_control({"Groups": {GROUP: {"Hang": []}}})
    wait_for(lambda: len(stack.members()) == 1, what="the late instance to be adopted")
    assert len(stack.all_instances()) == 1
