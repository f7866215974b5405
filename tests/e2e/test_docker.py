"""The docker provider through the CLI: ``infrakit plugin start group docker vanilla`` against a
real engine (a private podman service, see tests/podman_fixture.py), with examples/docker.json.

The group's resync timer is set to a minute, so healing within the waits below comes from the
engine's events, not from polling.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import E2E, EXAMPLES, wait_for
from tests.podman_fixture import Podman, podman_session

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

GROUP_LABEL = "infrakit.group=workers"


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    yield from podman_session()


@pytest.fixture
def engine(podman: Podman) -> Iterator[Podman]:
    if podman.service is None or podman.service.poll() is not None:
        podman.start_service()
    yield podman
    podman.remove_all_containers()


def running(engine: Podman) -> list[dict[str, Any]]:
    return [c for c in engine.containers(label=GROUP_LABEL) if c["State"] == "running"]


def start_stack(e2e: E2E, engine: Podman) -> None:
    """`infrakit plugin start group docker vanilla` against the engine; resync only every
    minute, so heals within the tests' waits come from engine events."""
    e2e.start(
        "infrakit",
        "plugin",
        "start",
        "group",
        "docker",
        "vanilla",
        "-o",
        "group.poll-interval=60s",
        sockets=["group", "instance-docker", "flavor-vanilla"],
        DOCKER_HOST=engine.host,
    )


def test_a_group_of_containers_heals_updates_and_is_destroyed(e2e: E2E, engine: Podman) -> None:
    start_stack(e2e, engine)
    assert "instance-docker" in e2e.lines("plugin", "ls", "-q")
    info = json.loads(e2e.run("instance", "--name", "instance-docker", "info", "-o", "json").stdout)
    assert "Image" in json.dumps(info)

    spec = EXAMPLES / "docker.json"
    assert (
        e2e.run("group", "commit", str(spec)).stdout == "Committed workers: Managing 3 instances\n"
    )
    first = wait_for(lambda: len(running(engine)) == 3 and running(engine), what="3 containers")
    assert all(c["Labels"]["tier"] == "worker" for c in first)
    members = e2e.lines("group", "describe", "workers", "-q")
    assert sorted(line.split()[0] for line in members) == sorted(c["Id"][:12] for c in first)

    # A user removes one container by force: the group replaces it (driven by engine events).
    victim = first[0]["Id"]
    engine.kill_and_remove(victim)
    healed = wait_for(
        lambda: len(now := running(engine)) == 3 and victim not in {c["Id"] for c in now} and now,
        timeout=20,
        what="the removed container replaced",
    )
    assert len({c["Id"] for c in healed} & {c["Id"] for c in first}) == 2

    # Changed Properties: a rolling update replaces every container with the new Env.
    doc = json.loads(spec.read_text())
    doc["Properties"]["Instance"]["Properties"]["Env"] = ["ROLE=worker", "VERSION=2"]
    updated_spec = e2e.home / "docker-v2.json"
    updated_spec.write_text(json.dumps(doc))
    out = e2e.run("group", "commit", str(updated_spec), "--pretend").stdout
    assert out.splitlines()[0] == (
        "Committing workers would involve: Performing a rolling update on 3 instances"
    )
    e2e.run("group", "commit", str(updated_spec))
    before = {c["Id"] for c in healed}

    def all_updated() -> bool:
        now = running(engine)
        if len(now) != 3 or {c["Id"] for c in now} & before:
            return False
        api = engine.client()
        try:
            return all("VERSION=2" in api.inspect_container(c["Id"])["Config"]["Env"] for c in now)
        finally:
            api.close()

    wait_for(all_updated, timeout=60, what="3 containers with VERSION=2")
    wait_for(
        lambda: "converged" in e2e.run("group", "describe", "workers").stdout,
        timeout=30,
        what="update finished",
    )

    assert e2e.run("group", "destroy", "workers").stdout == "Destroy workers initiated\n"
    wait_for(lambda: engine.containers(all=True, label=GROUP_LABEL) == [], what="no container left")
    assert e2e.lines("instance", "describe", "-q", "--name", "instance-docker") == []


def test_a_missing_image_is_reported_at_commit(e2e: E2E, engine: Podman) -> None:
    e2e.start(
        "infrakit",
        "plugin",
        "start",
        "group",
        "docker",
        "vanilla",
        sockets=["group", "instance-docker", "flavor-vanilla"],
        DOCKER_HOST=engine.host,
    )
    doc = json.loads((EXAMPLES / "docker.json").read_text())
    doc["Properties"]["Instance"]["Properties"]["Image"] = "localhost/absent:9"
    spec = e2e.home / "absent.json"
    spec.write_text(json.dumps(doc))
    err = e2e.fails("group", "commit", str(spec))
    assert "image 'localhost/absent:9' is not on the engine" in err and "podman images" in err
    assert engine.containers(all=True) == []


def test_engine_down_means_errors_and_no_runaway_then_it_heals_when_back(
    e2e: E2E, engine: Podman
) -> None:
    start_stack(e2e, engine)
    e2e.run("group", "commit", str(EXAMPLES / "docker.json"))
    first = wait_for(lambda: len(running(engine)) == 3 and running(engine), what="3 containers")

    # The engine's API goes away (the containers keep running under conmon).
    engine.stop_service()
    err = e2e.fails("instance", "--name", "instance-docker", "describe")
    assert "cannot reach the docker engine" in err and engine.socket.name in err
    # The controller keeps running and passes the provider's error on, on one line; it never
    # reads the error as "0 instances" (that would create 3 more once the engine is back).
    # `group describe` answers from the last observation: actual unknown, and why.
    out = wait_for(
        lambda: (
            (o := e2e.run("group", "describe", "workers").stdout)
            and "cannot reach the docker engine" in o
            and o
        ),
        what="group describe to say the engine cannot be reached",
    )
    assert "actual unknown" in out and " - converging" in out, out
    assert e2e.lines("group", "ls", "-q") == ["workers"]
    # One container dies meanwhile (podman's CLI works without the API service).
    victim = first[0]["Id"]
    engine.kill_and_remove(victim)

    engine.start_service()
    seen_most = 0

    def healed() -> bool:
        nonlocal seen_most
        now = engine.containers(all=True, label=GROUP_LABEL)
        seen_most = max(seen_most, len(now))
        alive = [c for c in now if c["State"] == "running"]
        return len(alive) == 3 and victim not in {c["Id"] for c in alive}

    wait_for(healed, timeout=60, what="the lost container replaced once the engine is back")
    for _ in range(10):  # and it stays at 3: nothing queued during the outage piles up
        healed()
        time.sleep(0.2)
    assert seen_most == 3
    assert len(running(engine)) == 3
