"""Which groups an instance event queues (``controller.source.InstanceEvents.route``): a table of
situations, against the real router (its plugin watches run on a plugin that publishes nothing)."""

from __future__ import annotations

import pytest

from infrakit._utils.clock import SystemClock
from infrakit.controller.source import InstanceEvents
from infrakit.spi.event import instance_change

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("event", "owned", "creating", "queued"),
    [
        # The echo of a group's own Provision while it still creates: its creates' end queues it.
        (instance_change("created", "i-1", {"infrakit.group": "a"}), True, {"a"}, []),
        # The same echo once the group is done creating: one pass.
        (instance_change("created", "i-1", {"infrakit.group": "a"}), True, set(), ["a"]),
        # Anything else about an owned instance queues its owner, creating or not.
        (instance_change("deleted", "i-1"), True, {"a"}, ["a"]),
        (instance_change("changed", "i-1"), True, {"a"}, ["a"]),
        # An unknown instance naming its group: that group, unless it creates (an early echo).
        (instance_change("created", "i-9", {"infrakit.group": "b"}), False, {"a"}, ["b"]),
        (instance_change("created", "i-9", {"infrakit.group": "a"}), False, {"a"}, []),
        # An unknown instance naming no group: every group of the plugin.
        (instance_change("deleted", "i-9"), False, set(), ["a", "b"]),
    ],
)
async def test_route(event, owned: bool, creating: set[str], queued: list[str]) -> None:
    router = InstanceEvents(
        lambda name: object(), SystemClock(), creating=creating.__contains__, enqueue=print
    )
    try:
        router.follow("inst", "a")
        router.follow("inst", "b")
        if owned:
            router.provisioned("a", "i-1")
        assert sorted(router.route("inst", event)) == queued
    finally:
        await router.stop()
