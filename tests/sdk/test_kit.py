"""The public test kit as a plugin author uses it: ``from infrakit.testing import ...``, a plugin
class with plain ``def`` methods under the real group controller and the fake clock."""

from __future__ import annotations

from typing import Any

from infrakit.controller.group.controller import GroupController
from infrakit.spi import group
from infrakit.spi.instance import Description, Spec, tags_match
from infrakit.testing import FakeClock, FakeFlavorPlugin, lookup, wait_until


class PlainCloud:
    """A provider written the simplest way: plain methods, no asyncio."""

    def __init__(self) -> None:
        self.machines: dict[str, dict[str, str]] = {}
        self.made = 0

    def validate(self, properties: Any) -> None:
        return None

    def provision(self, spec: Spec) -> str:
        self.made += 1
        iid = f"vm-{self.made}"
        self.machines[iid] = dict(spec.tags)
        return iid

    def destroy(self, instance: str) -> None:  # the Context argument is optional
        self.machines.pop(instance, None)

    def describe_instances(self, tags: dict[str, str]) -> list[Description]:
        return [
            Description(iid, None, dict(t))
            for iid, t in self.machines.items()
            if tags_match(t, tags)
        ]


async def test_a_plain_def_plugin_runs_under_the_controller_through_lookup() -> None:
    clock = FakeClock()
    cloud = PlainCloud()
    controller = GroupController(
        lookup({"cloud": cloud}), lookup({"flav": FakeFlavorPlugin()}), clock=clock
    )
    await controller.start()
    try:
        props = {
            "Allocation": {"Size": 3},
            "Instance": {"Plugin": "cloud", "Properties": {}},
            "Flavor": {"Plugin": "flav", "Properties": {}},
        }
        await controller.commit_group(group.Spec("web", props), False)
        await clock.run_until(lambda: len(cloud.machines) == 3)
        await clock.advance(31)
        cloud.machines.pop("vm-1")  # dies out of band; the next resync pass (10 s) heals it
        await clock.advance(10)
        assert len(cloud.machines) == 3 and "vm-1" not in cloud.machines
    finally:
        await controller.stop()


async def test_wait_until_takes_async_predicates() -> None:
    calls = 0

    async def ready() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 3

    await wait_until(ready, timeout=5)
    assert calls == 3
