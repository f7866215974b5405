"""The controller driven by a real event-publishing provider (the simulator), in real time: a
provider whose Describe lags tells us when an instance becomes visible, and that event - not the
hour-long resync - must complete the convergence."""

from __future__ import annotations

import asyncio

import pytest

from infrakit.controller.group.controller import GroupController
from infrakit.plugins.simulator import SimulatorInstancePlugin
from infrakit.spi.group import Spec

pytestmark = pytest.mark.timeout(20)


async def test_visibility_events_of_a_lagging_provider_trigger_the_pass() -> None:
    sim = SimulatorInstancePlugin()
    ctl = GroupController(lambda n: sim, lambda n: sim.flavor, poll_interval=3600)
    await ctl.start()
    props = {
        "Allocation": {"Size": 2},
        "Instance": {"Plugin": "simulator", "Properties": {"Faults": {"DescribeLag": "300ms"}}},
        "Flavor": {"Plugin": "simulator"},
    }
    try:
        await ctl.commit_group(Spec("g", props), False)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if (await ctl.status("g"))["Converged"]:
                break
        status = await ctl.status("g")
        assert status["Converged"], status  # within 5 s, although the resync is an hour away
        assert len(await sim.describe_instances({"infrakit.group": "g"})) == 2
    finally:
        await ctl.stop()
        await sim.stop()
