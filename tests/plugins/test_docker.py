"""The docker instance plugin against a real engine (podman's Docker API), over its real socket.

Everything here runs real containers from a local busybox image (tests/podman_fixture.py); when
podman cannot be installed on the machine the tests are skipped with the reason (and fail if it is
installed but cannot run a container).
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit import errors
from infrakit.plugins.docker import DockerInstancePlugin
from infrakit.plugins.docker.kind import build
from infrakit.plugins.docker.plugin import (
    PLUGIN_LABEL,
    command_with_init,
    parse_properties,
    published_address,
)
from infrakit.rpc.client import SyncClient
from infrakit.spi.event import Event
from infrakit.spi.instance import Context, Spec
from infrakit.spi.plugin import Context as BuildContext
from infrakit.testing import serve_plugin, short_tempdir
from infrakit.testing.harness import Harness
from tests.podman_fixture import IMAGE, Podman, podman_session

SLEEPER: dict[str, Any] = {
    "Image": IMAGE,
    "Cmd": ["sleep", "1000"],
    "NetworkMode": "none",
    "StopTimeout": 1,
}


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    yield from podman_session()


@pytest.fixture
def engine(podman: Podman) -> Iterator[Podman]:
    if podman.service is None or podman.service.poll() is not None:
        podman.start_service()
    yield podman
    podman.remove_all_containers()


@pytest.fixture
async def served(engine: Podman) -> AsyncIterator[tuple[DockerInstancePlugin, Harness]]:
    plugin = DockerInstancePlugin(engine.host)
    async with serve_plugin(plugin, "instance-docker") as harness:
        yield plugin, harness


def _inspect(engine: Podman, container_id: str) -> dict[str, Any]:
    api = engine.client()
    try:
        attrs: dict[str, Any] = api.inspect_container(container_id)
        return attrs
    finally:
        api.close()


async def _next_event(events: AsyncIterator[Event], timeout: float = 10.0) -> Event:
    return await asyncio.wait_for(anext(events), timeout)


async def _events_until(
    events: AsyncIterator[Event], wanted: tuple[str, str], timeout: float = 10.0
) -> list[Event]:
    """Read events until one has (type, id) == ``wanted``; return all read."""
    seen: list[Event] = []
    async with asyncio.timeout(timeout):
        async for event in events:
            seen.append(event)
            if (event.type, event.id) == wanted:
                return seen
    raise AssertionError(f"stream ended before {wanted}: {seen}")


async def _wait_file(path: Path, timeout: float = 10.0) -> str:
    async with asyncio.timeout(timeout):
        while not (path.exists() and path.read_text()):
            await asyncio.sleep(0.02)
    return path.read_text()


# --- provisioning and describing ----------------------------------------------------------------


async def test_provision_runs_a_labelled_container(served, engine: Podman) -> None:
    _plugin, h = served
    spec = Spec(
        properties={**SLEEPER, "Env": {"GREETING": "hello"}},
        tags={"infrakit.group": "workers", "infrakit.config.hash": "abc", "tier": "web"},
    )
    iid = await h.instance.provision(spec)
    assert iid is not None and len(iid) == 12
    attrs = _inspect(engine, iid)
    assert attrs["Id"].startswith(iid)
    assert attrs["State"]["Status"] == "running"
    assert attrs["Config"]["Cmd"] == ["sleep", "1000"]
    assert "GREETING=hello" in attrs["Config"]["Env"]
    assert attrs["Config"]["Labels"] == {
        "infrakit.group": "workers",
        "infrakit.config.hash": "abc",
        "tier": "web",
        PLUGIN_LABEL: "instance-docker",
    }
    assert attrs["Name"].lstrip("/").startswith("workers-")
    # Described with the same tags (our marker label is not a tag).
    [desc] = await h.instance.describe_instances({"infrakit.group": "workers"})
    assert (desc.id, desc.logical_id) == (iid, None)
    assert desc.tags == {"infrakit.group": "workers", "infrakit.config.hash": "abc", "tier": "web"}
    assert desc.properties is None


async def test_describe_filters_by_labels_with_infrakits_rules(served) -> None:
    _plugin, h = served
    web = await h.instance.provision(Spec(SLEEPER, tags={"g": "a", "tier": "web"}))
    db = await h.instance.provision(Spec(SLEEPER, tags={"g": "a", "tier": "db"}))
    other = await h.instance.provision(Spec(SLEEPER, tags={"g": "b", "tier": ""}))
    ids = lambda found: sorted(d.id for d in found)  # noqa: E731
    assert ids(await h.instance.describe_instances({})) == sorted([web, db, other])
    assert ids(await h.instance.describe_instances({"g": "a"})) == sorted([web, db])
    assert ids(await h.instance.describe_instances({"g": "a", "tier": "web"})) == [web]
    assert await h.instance.describe_instances({"g": "a", "tier": "cache"}) == []
    # A wanted "" matches a missing label and an empty one.
    assert ids(await h.instance.describe_instances({"tier": ""})) == [other]
    assert ids(await h.instance.describe_instances({"zone": ""})) == sorted([web, db, other])
    [described] = await h.instance.describe_instances({"tier": "db"}, properties=True)
    assert described.properties["Image"] == IMAGE
    assert described.properties["State"] == "running"
    assert described.properties["Name"].startswith("instance-")  # no group tag


async def test_pets_carry_their_logical_id_as_a_label_and_name(served, engine: Podman) -> None:
    _plugin, h = served
    iid = await h.instance.provision(
        Spec(SLEEPER, tags={"infrakit.group": "pets"}, logical_id="db-1")
    )
    [desc] = await h.instance.describe_instances({"infrakit.group": "pets"})
    assert (desc.id, desc.logical_id, desc.tags["infrakit.logical_id"]) == (iid, "db-1", "db-1")
    assert _inspect(engine, iid)["Name"].lstrip("/").startswith("db-1-")


async def test_exited_containers_are_not_instances(served, engine: Podman) -> None:
    _plugin, h = served
    quitter = await h.instance.provision(
        Spec({**SLEEPER, "Cmd": ["sh", "-c", "exit 3"]}, tags={"g": "x"})
    )
    stayer = await h.instance.provision(Spec(SLEEPER, tags={"g": "x"}))

    async def members() -> list[str]:
        return sorted(d.id for d in await h.instance.describe_instances({"g": "x"}))

    async with asyncio.timeout(10):
        while await members() != [stayer]:
            await asyncio.sleep(0.05)
    # It is still on the engine (for `podman logs`), exited with its code.
    assert _inspect(engine, quitter)["State"]["ExitCode"] == 3


async def test_containers_without_our_label_are_invisible_and_untouchable(
    served, engine: Podman
) -> None:
    _plugin, h = served
    api = engine.client()
    try:
        stranger = api.create_container(
            IMAGE,
            ["sleep", "1000"],
            labels={"infrakit.group": "workers"},
            host_config=api.create_host_config(network_mode="none"),
        )["Id"]
        api.start(stranger)
    finally:
        api.close()
    assert await h.instance.describe_instances({"infrakit.group": "workers"}) == []
    with pytest.raises(errors.NotFoundError, match="not found among the containers infrakit"):
        await h.instance.destroy(stranger[:12], Context("terminate"))
    assert _inspect(engine, stranger)["State"]["Status"] == "running"


# --- properties ---------------------------------------------------------------------------------


async def test_init_runs_before_the_command_with_env_and_volumes(served) -> None:
    _plugin, h = served
    shared = short_tempdir("ikdv")
    try:
        properties = {
            **SLEEPER,
            "Env": ["GREETING=hello"],
            "Volumes": [f"{shared}:/data"],
            "Cmd": ["sh", "-c", "cat /data/init.txt > /data/cmd.txt; exec sleep 1000"],
        }
        await h.instance.provision(
            Spec(properties, tags={"g": "init"}, init='echo "init says $GREETING" > /data/init.txt')
        )
        # The command saw what Init wrote: Init ran first, in the container, with the Env.
        assert await _wait_file(shared / "cmd.txt") == "init says hello\n"
    finally:
        for path in shared.iterdir():
            path.unlink()
        shared.rmdir()


def test_init_wraps_the_images_command_when_properties_have_none() -> None:
    props = parse_properties({"Image": IMAGE})
    entrypoint, cmd = command_with_init(props, "echo hi", {"Cmd": ["sh"], "Entrypoint": None})
    assert entrypoint == ["/bin/sh", "-c", 'echo hi\nexec "$@"', "infrakit-init"]
    assert cmd == ["sh"]
    assert command_with_init(props, "", {"Cmd": ["sh"]}) == (None, None)
    with_entry = parse_properties({"Image": IMAGE, "Entrypoint": "tini --", "Cmd": ["app"]})
    assert command_with_init(with_entry, "x", {"Cmd": ["ignored"]})[1] == ["tini", "--", "app"]


async def test_ports_restart_policy_and_stop_timeout_reach_the_engine(
    served, engine: Podman
) -> None:
    _plugin, h = served
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    properties = {
        "Image": IMAGE,
        "Cmd": ["sh", "-c", "echo pong > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"],
        "Ports": {"8080/tcp": f"127.0.0.1:{port}"},
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
        "StopTimeout": 4,
    }
    iid = await h.instance.provision(Spec(properties, tags={"g": "web"}))
    attrs = _inspect(engine, iid)
    assert attrs["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert attrs["HostConfig"]["PortBindings"]["8080/tcp"] == [
        {"HostIp": "127.0.0.1", "HostPort": str(port)}
    ]
    assert attrs["Config"]["StopTimeout"] == 4

    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
            return str(reply.read().decode())

    async with asyncio.timeout(15):
        while True:
            try:
                body = await asyncio.to_thread(get)
                break
            except OSError:
                await asyncio.sleep(0.1)
    assert body == "pong\n"
    # The published port is the instance's address (what a load balancer's ingress registers).
    [described] = await h.instance.describe_instances({"g": "web"})
    assert described.tags["infrakit.address"] == f"127.0.0.1:{port}"


def test_the_address_is_the_first_published_tcp_port() -> None:
    def row(*ports: dict[str, Any]) -> dict[str, Any]:
        return {"Ports": list(ports)}

    tcp = {"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp", "IP": "0.0.0.0"}
    assert published_address(row(tcp)) == "127.0.0.1:8080"
    assert published_address(row({**tcp, "IP": "::"}, tcp)) == "127.0.0.1:8080"
    low = {"PrivatePort": 22, "PublicPort": 2222, "Type": "tcp", "IP": "127.0.0.2"}
    assert published_address(row(tcp, low)) == "127.0.0.2:2222"
    assert published_address(row({**tcp, "IP": "fd00::1"})) == "[fd00::1]:8080"
    udp = {"PrivatePort": 53, "PublicPort": 5353, "Type": "udp"}
    assert published_address(row(udp, {"PrivatePort": 80, "Type": "tcp"})) == ""
    assert published_address({}) == ""


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        (None, 'expected an object with at least "Image"'),
        ({"Cmd": ["sleep", "1"]}, "Properties.Image: expected the name of an image"),
        ({"Image": IMAGE, "Comand": ["x"]}, "unknown key 'Comand'; expected some of Image, Cmd"),
        ({"Image": IMAGE, "Cmd": [1]}, "Properties.Cmd: expected an array of strings"),
        ({"Image": IMAGE, "Env": ["NOEQUALS"]}, "Properties.Env: expected"),
        ({"Image": IMAGE, "Ports": {"http": 80}}, "Properties.Ports.http: expected a container"),
        ({"Image": IMAGE, "Ports": {"80": 99999}}, "Properties.Ports.80: expected a host port"),
        ({"Image": IMAGE, "Volumes": ["/nocolon"]}, "Properties.Volumes: expected an array"),
        ({"Image": IMAGE, "RestartPolicy": {"Name": "sometimes"}}, "RestartPolicy.Name"),
        ({"Image": IMAGE, "StopTimeout": -1}, "Properties.StopTimeout"),
    ],
)
async def test_bad_properties_are_rejected_with_the_key_and_the_expectation(
    served, properties: Any, message: str
) -> None:
    _plugin, h = served
    with pytest.raises(errors.SpecError, match=message) as caught:
        await h.instance.validate(properties)
    assert "\n" not in str(caught.value)


async def test_an_image_not_on_the_engine_is_a_clear_error_and_never_pulled(
    served, engine: Podman
) -> None:
    _plugin, h = served
    missing = "localhost/not-here:1.0"
    for call in (
        h.instance.validate({"Image": missing}),
        h.instance.provision(Spec({"Image": missing}, tags={"g": "x"})),
    ):
        with pytest.raises(errors.SpecError) as caught:
            await call
        text = str(caught.value)
        assert f"image {missing!r} is not on the engine at {engine.host}" in text
        assert "never pulls" in text and "podman images" in text
    assert engine.containers(all=True) == []
    assert missing not in engine.cli("images", "--format", "{{.Repository}}:{{.Tag}}")


async def test_info_offers_schema_and_a_working_example(served) -> None:
    plugin, h = served

    def api_json() -> Any:
        with SyncClient(h.name, h.socket) as client:
            return client.get_json("/info/api.json")

    document = await asyncio.to_thread(api_json)
    assert "Image" in json.dumps(document)
    info = plugin.info()
    assert info["schema"]["required"] == ["Image"]
    await h.instance.validate(info["example"])  # the example is valid against this engine


async def test_a_container_that_cannot_start_is_removed_and_reported(
    served, engine: Podman
) -> None:
    _plugin, h = served
    properties = {**SLEEPER, "Cmd": ["/no/such/program"]}
    with pytest.raises(errors.InfrakitError, match="refused to start container") as caught:
        await h.instance.provision(Spec(properties, tags={"g": "bad"}))
    assert "\n" not in str(caught.value)
    assert engine.containers(all=True) == []


# --- destroying ---------------------------------------------------------------------------------


async def test_destroy_stops_and_removes_and_unknown_ids_are_not_found(
    served, engine: Podman
) -> None:
    _plugin, h = served
    iid = await h.instance.provision(Spec(SLEEPER, tags={"g": "d"}))
    await h.instance.destroy(iid, Context("terminate"))
    assert engine.containers(all=True) == []
    assert await h.instance.describe_instances({"g": "d"}) == []
    for unknown in (iid, "0123456789ab", "../etc"):
        with pytest.raises(errors.NotFoundError, match="not found"):
            await h.instance.destroy(unknown, Context("terminate"))


async def test_label_is_not_supported(served) -> None:
    _plugin, h = served
    iid = await h.instance.provision(Spec(SLEEPER, tags={"g": "l"}))
    with pytest.raises(errors.InfrakitError, match="does not support Label"):
        await h.instance.label(iid, {"new": "tag"})


# --- events -------------------------------------------------------------------------------------


async def test_engine_events_are_published_and_survive_an_engine_restart(
    served, engine: Podman
) -> None:
    plugin, h = served
    iid = await h.instance.provision(Spec(SLEEPER, tags={"g": "e"}))
    events = h.instance.subscribe("instance/")
    try:
        assert (await _next_event(events)).type == "subscribed"
        # A container killed out of band is published as "died"; removing it as "deleted".
        # (Kill and remove are separate steps: with ``rm -f`` podman may remove the container
        # before its cleanup process records the death, and then emits only "remove".)
        await asyncio.to_thread(engine.cli, "kill", iid)
        died = await _events_until(events, ("died", iid))
        await asyncio.to_thread(engine.cli, "rm", iid)
        deleted = await _events_until(events, ("deleted", iid))
        assert all(e.topic == "instance/change" for e in died + deleted)

        # The engine restarts: the stream reconnects and says so, then events flow again.
        await asyncio.to_thread(engine.restart_service)
        await _events_until(events, ("resync", ""), timeout=20)
        assert plugin.events_connected.is_set()
        second = await h.instance.provision(Spec(SLEEPER, tags={"g": "e"}))
        await _events_until(events, ("started", second))
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def test_events_of_other_containers_are_not_published(served, engine: Podman) -> None:
    _plugin, h = served
    events = h.instance.subscribe("instance/")
    try:
        assert (await _next_event(events)).type == "subscribed"
        await asyncio.to_thread(
            engine.cli, "run", "--rm", "--network", "none", "--label", "x=1", IMAGE, "true"
        )
        ours = await h.instance.provision(Spec(SLEEPER, tags={"g": "o"}))
        seen = await _events_until(events, ("started", ours))
        assert {e.id for e in seen} == {ours}
    finally:
        await events.aclose()  # type: ignore[attr-defined]


# --- the kind -------------------------------------------------------------------------------------


def _build_context(options: dict[str, Any]) -> BuildContext:
    def nowhere(name: str) -> Any:
        raise errors.NotFoundError(name)

    return BuildContext(
        name="instance-docker",
        options=options,
        home=Path("/nonexistent"),
        instance_lookup=nowhere,
        flavor_lookup=nowhere,
        group_lookup=nowhere,
    )


def test_kind_takes_the_host_from_the_option_or_docker_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/from-env.sock")
    served = build(_build_context({}))
    assert served.instance[""].host == "unix:///tmp/from-env.sock"  # type: ignore[attr-defined]
    served = build(_build_context({"host": "tcp://127.0.0.1:2375"}))
    assert served.instance[""].host == "tcp://127.0.0.1:2375"  # type: ignore[attr-defined]
    monkeypatch.delenv("DOCKER_HOST")
    served = build(_build_context({}))
    assert served.instance[""].host == "unix:///var/run/docker.sock"  # type: ignore[attr-defined]
    with pytest.raises(errors.SpecError, match="expected an address such as unix://"):
        build(_build_context({"host": "/var/run/docker.sock"}))


async def test_an_unreachable_engine_is_a_one_line_error_naming_it() -> None:
    directory = short_tempdir("iknd")
    try:
        host = f"unix://{directory}/nothing.sock"
        plugin = DockerInstancePlugin(host)
        async with serve_plugin(plugin, "instance-docker") as h:
            with pytest.raises(errors.InfrakitError) as caught:
                await h.instance.describe_instances({})
            text = str(caught.value)
            assert f"cannot reach the docker engine at {host}" in text and "\n" not in text
            assert not plugin.events_connected.is_set()
    finally:
        directory.rmdir()
