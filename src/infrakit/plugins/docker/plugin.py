"""The docker instance plugin's implementation: containers created and watched through docker-py.

Every call goes to the engine (Docker, or podman's Docker-compatible ``podman system service``);
the plugin keeps no state of its own, so any number of plugins - or a restarted one - see the same
instances. Membership is the container's labels: every container this plugin creates carries the
spec's tags as labels, plus ``infrakit.logical_id`` (pets) and ``infrakit.docker.plugin`` (the name
of the plugin that created it, which also marks it as ours: containers without that label are never
listed nor destroyed).

docker-py is synchronous, so the SPI methods are plain ``def`` methods: the adapter runs them in a
worker thread. docker-py is imported lazily, so listing plugin kinds does not pay for it and a
missing ``docker`` package is reported when the plugin starts, with the command that installs it.

The engine's event stream (``GET /events``, container events) is read by one daemon thread and
published on :data:`~infrakit.spi.event.TOPIC_INSTANCE_CHANGE`; when the stream breaks (the engine
restarted) the thread reconnects with a capped backoff and publishes a ``resync`` event, so that
subscribers re-read what changed while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import shlex
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from infrakit._utils.aio import Broker
from infrakit.errors import NotFoundError, PluginError, SpecError
from infrakit.plugins.docker.kind import DEFAULT_HOST
from infrakit.spi.event import TOPIC_INSTANCE_CHANGE, Event
from infrakit.spi.instance import Context, Description, Spec, tags_match
from infrakit.spi.types import ADDRESS_TAG, JSON, LOGICAL_ID_TAG, Tags, ci_get, ci_view

__all__ = [
    "MEMBER_STATES",
    "PLUGIN_LABEL",
    "ContainerProperties",
    "DockerInstancePlugin",
    "parse_properties",
]

log = logging.getLogger(__name__)

#: Label on every container this plugin creates; its value is the plugin's name.
PLUGIN_LABEL = "infrakit.docker.plugin"

#: Container states that count as a live instance. ``exited``/``dead``/``created`` do not: the
#: group replaces them. ``restarting`` does, because the engine is already bringing it back under
#: its RestartPolicy (replacing it too would double the group); ``paused`` does, because someone
#: paused it on purpose and unpausing must not leave the group over size.
MEMBER_STATES = frozenset({"running", "restarting", "paused"})

#: Docker's own default grace period between SIGTERM and SIGKILL on stop.
DEFAULT_STOP_TIMEOUT = 10

#: Engine event actions worth a reconcile pass, and the event type each is published as.
_EVENT_TYPES = {
    "start": "started",
    "restart": "started",
    "unpause": "started",
    "die": "died",
    "pause": "paused",
    "destroy": "deleted",  # Docker
    "remove": "deleted",  # podman's compatible API
}

#: Reconnect backoff of the event thread (seconds): first try, cap.
_RECONNECT_FIRST, _RECONNECT_CAP = 0.1, 2.0

_RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")

PROPERTIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A container, in the Docker Engine API's names (ContainerCreate). Only Image is required.",
    "required": ["Image"],
    "additionalProperties": False,
    "properties": {
        "Image": {
            "type": "string",
            "description": "image present on the engine (never pulled): load it first",
        },
        "Cmd": {
            "type": ["array", "string"],
            "items": {"type": "string"},
            "description": "command (Config.Cmd); a string is split like a shell would",
        },
        "Entrypoint": {"type": ["array", "string"], "items": {"type": "string"}},
        "Env": {
            "type": ["array", "object"],
            "items": {"type": "string"},
            "description": '["KEY=value", ...] as Config.Env, or {"KEY": "value"}',
        },
        "Ports": {
            "type": "object",
            "description": 'container port -> host port: {"80/tcp": 8080} or {"80": "127.0.0.1:8080"} or {"80": null} (any free port)',
        },
        "Volumes": {
            "type": "array",
            "items": {"type": "string"},
            "description": 'HostConfig.Binds: ["/host/dir:/data:ro", "named-volume:/cache"]',
        },
        "RestartPolicy": {
            "type": "object",
            "description": 'HostConfig.RestartPolicy: {"Name": "no|always|unless-stopped|on-failure", "MaximumRetryCount": 0}',
        },
        "NetworkMode": {
            "type": "string",
            "description": "HostConfig.NetworkMode: bridge (engine default), none, host, or a network name",
        },
        "StopTimeout": {
            "type": "integer",
            "description": f"seconds between SIGTERM and SIGKILL on Destroy (default {DEFAULT_STOP_TIMEOUT})",
        },
    },
}
PROPERTIES_EXAMPLE: dict[str, Any] = {
    "Image": "localhost/busybox:latest",
    "Cmd": ["sleep", "1000"],
    "Env": ["GREETING=hello"],
    "RestartPolicy": {"Name": "no"},
    "NetworkMode": "none",
    "StopTimeout": 2,
}


@dataclass(frozen=True, slots=True)
class ContainerProperties:
    """An instance's ``Properties``, checked. ``None`` means "the image's / engine's default"."""

    image: str
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    #: container port ("80/tcp") -> host binding: port, (ip, port), or None for any free port.
    ports: dict[str, int | tuple[str, int] | None] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)
    restart_policy: dict[str, Any] | None = None
    network_mode: str | None = None
    stop_timeout: int = DEFAULT_STOP_TIMEOUT


def _bad(what: str, expected: str) -> SpecError:
    return SpecError(
        f"docker Properties.{what}: expected {expected}; see the example of: infrakit instance info"
    )


def _argv(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise _bad(what, f"a command line that splits ({exc})") from None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise _bad(what, 'an array of strings, e.g. ["sleep", "1000"]')


def _env(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict):
        if not all(isinstance(v, str | int | float | bool) for v in value.values()):
            raise _bad("Env", 'an object of string values, e.g. {"KEY": "value"}')
        return [f"{k}={v}" for k, v in value.items()]
    if isinstance(value, list) and all(isinstance(item, str) and "=" in item for item in value):
        return list(value)
    raise _bad("Env", '["KEY=value", ...] or {"KEY": "value"}')


def _host_port(value: Any, what: str) -> int | tuple[str, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
        return value
    if isinstance(value, str):
        ip, _, port = value.rpartition(":")
        if port.isdigit() and 0 < int(port) < 65536:
            return (ip, int(port)) if ip else int(port)
    raise _bad(what, 'a host port (8080), "IP:PORT" ("127.0.0.1:8080") or null (any free port)')


def _ports(value: Any) -> dict[str, int | tuple[str, int] | None]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad("Ports", 'an object, e.g. {"80/tcp": 8080}')
    out: dict[str, int | tuple[str, int] | None] = {}
    for key, binding in value.items():
        port, _, proto = key.partition("/")
        if not port.isdigit() or proto not in ("", "tcp", "udp", "sctp"):
            raise _bad(f"Ports.{key}", 'a container port key such as "80" or "53/udp"')
        out[f"{int(port)}/{proto or 'tcp'}"] = _host_port(binding, f"Ports.{key}")
    return out


def _restart_policy(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    view = ci_view(value, "docker Properties.RestartPolicy")
    name = ci_get(view, "Name", "no")
    retries = ci_get(view, "MaximumRetryCount", 0)
    if name == "":
        name = "no"
    if name not in _RESTART_POLICIES:
        raise _bad("RestartPolicy.Name", " or ".join(repr(p) for p in _RESTART_POLICIES))
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise _bad("RestartPolicy.MaximumRetryCount", "a whole number >= 0")
    return {"Name": name, "MaximumRetryCount": retries}


def parse_properties(properties: JSON) -> ContainerProperties:
    """Check an instance's ``Properties`` (keys case-insensitive, as Go decodes them)."""
    if not isinstance(properties, dict):
        raise SpecError(
            'docker instance Properties: expected an object with at least "Image", '
            'e.g. {"Image": "localhost/busybox:latest", "Cmd": ["sleep", "1000"]}'
        )
    allowed = {str(k).lower(): str(k) for k in PROPERTIES_SCHEMA["properties"]}
    unknown = sorted(k for k in properties if k.lower() not in allowed)
    if unknown:
        raise SpecError(
            f"docker Properties: unknown key {unknown[0]!r}; expected some of "
            f"{', '.join(allowed.values())} (see: infrakit instance info)"
        )
    view = ci_view(properties, "docker Properties")
    image = ci_get(view, "Image")
    if not isinstance(image, str) or not image.strip():
        raise _bad("Image", 'the name of an image on the engine, e.g. "localhost/busybox:latest"')
    volumes = ci_get(view, "Volumes") or []
    if not isinstance(volumes, list) or not all(isinstance(v, str) and ":" in v for v in volumes):
        raise _bad("Volumes", 'an array of "SOURCE:TARGET[:ro]" strings')
    network_mode = ci_get(view, "NetworkMode")
    if network_mode is not None and (not isinstance(network_mode, str) or not network_mode):
        raise _bad("NetworkMode", '"bridge", "none", "host" or a network name')
    stop_timeout = ci_get(view, "StopTimeout", DEFAULT_STOP_TIMEOUT)
    if not isinstance(stop_timeout, int) or isinstance(stop_timeout, bool) or stop_timeout < 0:
        raise _bad("StopTimeout", "a whole number of seconds >= 0")
    return ContainerProperties(
        image=image.strip(),
        cmd=_argv(ci_get(view, "Cmd"), "Cmd"),
        entrypoint=_argv(ci_get(view, "Entrypoint"), "Entrypoint"),
        env=_env(ci_get(view, "Env")),
        ports=_ports(ci_get(view, "Ports")),
        volumes=list(volumes),
        restart_policy=_restart_policy(ci_get(view, "RestartPolicy")),
        network_mode=network_mode,
        stop_timeout=stop_timeout,
    )


def command_with_init(
    props: ContainerProperties, init: str, image_config: dict[str, Any]
) -> tuple[list[str] | None, list[str] | None]:
    """``(Entrypoint, Cmd)`` to create: the flavor's ``Init`` runs first, then the command.

    Without an Init both are the Properties' (``None`` = the image's). With one, the container runs
    ``/bin/sh -c '<Init>\\nexec "$@"' infrakit-init <command...>``, where the command is what the
    container would have run without Init (Properties' Entrypoint+Cmd, else the image's), so the
    command still ends up as PID 1 and receives the stop signal. The image must have /bin/sh.
    """
    if not init.strip():
        return props.entrypoint, props.cmd
    if props.entrypoint is not None:
        argv = props.entrypoint + (props.cmd or [])
    else:
        image_cmd = props.cmd if props.cmd is not None else image_config.get("Cmd") or []
        argv = list(image_config.get("Entrypoint") or []) + list(image_cmd)
    script = init.rstrip("\n") + ('\nexec "$@"' if argv else "")
    return ["/bin/sh", "-c", script, "infrakit-init"], argv


_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


def container_name(spec: Spec) -> str:
    """``<logical id or group>-<8 hex>``: readable in ``podman ps``, unique, a valid name."""
    base = spec.logical_id or spec.tags.get("infrakit.group") or "instance"
    base = _NAME_UNSAFE.sub("-", base).strip("-._")[:40] or "instance"
    return f"{base}-{secrets.token_hex(4)}"


class DockerInstancePlugin:
    """Instances as containers on the engine at ``host``. Serve it with ``infrakit plugin start docker``.

    ``client_factory(host)`` returns a ``docker.APIClient``; tests never replace it (they run a
    real engine), it exists so an embedding program can pass TLS settings.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        *,
        name: str = "instance-docker",
        client_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self.host = host
        self.name = name
        self._client_factory = client_factory or _api_client
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._broker: Broker[Event] = Broker()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._events_thread: threading.Thread | None = None
        self._stream: Any = None
        self._stream_lock = threading.Lock()
        #: True while the event stream is connected (for ``infrakit`` status and tests).
        self.events_connected = threading.Event()

    # --- engine access --------------------------------------------------------------------------

    def _api(self) -> Any:
        """The engine client, created on first use (creating one asks the engine its API version)."""
        with self._client_lock:
            if self._client is None:
                self._client = self._call(self._connect, "connect")
            return self._client

    def _connect(self) -> Any:
        """A new engine client. A UNIX socket is probed first with a socket we close ourselves:
        docker-py 7.2 leaks the socket of a failed UNIX connect (a ResourceWarning per attempt)."""
        if self.host.startswith("unix://"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(5.0)
                probe.connect(self.host.removeprefix("unix://"))
        return self._client_factory(self.host)

    def _call(self, fn: Callable[[], Any], doing: str) -> Any:
        """Run one engine call; turn docker-py's errors into one-line infrakit errors."""
        import docker.errors

        try:
            return fn()
        except docker.errors.NotFound:
            raise
        except docker.errors.InvalidArgument as exc:
            raise SpecError(f"docker: cannot {doing}: {exc}") from None
        except docker.errors.APIError as exc:
            raise PluginError(
                f"docker engine at {self.host} refused to {doing}: {exc.explanation or exc}"
            ) from None
        except (docker.errors.DockerException, OSError) as exc:  # requests' errors are OSErrors
            raise PluginError(
                f"cannot reach the docker engine at {self.host} to {doing} ({exc}); start it "
                f"(e.g. podman system service --time=0 unix:///run/podman/podman.sock) or point "
                f"DOCKER_HOST / -o docker.host= at it"
            ) from None

    def _local_image(self, image: str) -> dict[str, Any]:
        """The image's config; a clear error when it is not on the engine (it is never pulled)."""
        import docker.errors

        api = self._api()
        try:
            attrs = self._call(lambda: api.inspect_image(image), f"inspect image {image}")
        except docker.errors.NotFound:
            raise SpecError(
                f"docker Properties.Image: image {image!r} is not on the engine at {self.host}, "
                f"and infrakit never pulls; load it first (podman load -i IMAGE.tar, or "
                f"podman import ROOTFS.tar {image}, or docker pull {image}) and check with "
                f"podman images"
            ) from None
        config = attrs.get("Config") or {}
        return config if isinstance(config, dict) else {}

    # --- the Instance SPI -----------------------------------------------------------------------

    def validate(self, properties: JSON) -> None:
        """Check the Properties and that the image is on the engine."""
        self._local_image(parse_properties(properties).image)

    def provision(self, spec: Spec) -> str:
        """Create and start one container labelled with the spec's tags; return its short ID."""
        import docker.errors

        props = parse_properties(spec.properties)
        image_config = self._local_image(props.image)
        api = self._api()
        labels = {**spec.tags, PLUGIN_LABEL: self.name}
        if spec.logical_id:
            labels[LOGICAL_ID_TAG] = spec.logical_id
        entrypoint, cmd = command_with_init(props, spec.init, image_config)
        try:
            host_config = api.create_host_config(
                port_bindings=props.ports or None,
                binds=props.volumes or None,
                restart_policy=props.restart_policy,
                network_mode=props.network_mode,
            )
        except docker.errors.DockerException as exc:  # checked locally by docker-py
            raise SpecError(f"docker Properties: {exc}") from None
        name = container_name(spec)
        created = self._call(
            lambda: api.create_container(
                image=props.image,
                command=cmd,
                entrypoint=entrypoint,
                environment=props.env or None,
                labels=labels,
                ports=list(props.ports) or None,
                host_config=host_config,
                stop_timeout=props.stop_timeout,
                name=name,
            ),
            f"create a container from {props.image}",
        )
        container_id = str(created["Id"])
        try:
            self._call(lambda: api.start(container_id), f"start container {name}")
        except (PluginError, docker.errors.NotFound):
            with contextlib.suppress(Exception):
                api.remove_container(container_id, force=True, v=True)
            raise
        log.info("provisioned %s (%s)", container_id[:12], name)
        return container_id[:12]

    def destroy(self, instance_id: str, context: Context | None = None) -> None:
        """Stop the container (SIGTERM, then SIGKILL after its StopTimeout), then remove it."""
        import docker.errors

        attrs = self._inspect_ours(instance_id)
        full_id = str(attrs["Id"])
        grace = (attrs.get("Config") or {}).get("StopTimeout")
        if not isinstance(grace, int) or grace < 0:
            grace = DEFAULT_STOP_TIMEOUT
        api = self._api()
        try:
            self._call(lambda: api.stop(full_id, timeout=grace), f"stop container {instance_id}")
            self._call(
                lambda: api.remove_container(full_id, v=True, force=True),
                f"remove container {instance_id}",
            )
        except docker.errors.NotFound:
            pass  # removed meanwhile (by hand, or AutoRemove): the goal is reached
        reason = f" ({context.reason})" if context is not None and context.reason else ""
        log.info("destroyed %s%s", instance_id, reason)

    def describe_instances(self, tags: Tags, properties: bool = False) -> list[Description]:
        """Live containers (see :data:`MEMBER_STATES`) of this plugin carrying all ``tags``."""
        api = self._api()
        # The engine ANDs label filters; a wanted "" (InfraKit: "missing or empty") is checked here.
        wanted = [PLUGIN_LABEL] + [f"{k}={v}" for k, v in sorted(tags.items()) if v != ""]
        rows = self._call(
            lambda: api.containers(all=True, filters={"label": wanted}), "list containers"
        )
        out: list[Description] = []
        for row in rows:
            labels = dict(row.get("Labels") or {})
            if row.get("State") not in MEMBER_STATES or PLUGIN_LABEL not in labels:
                continue
            if not tags_match(labels, tags):
                continue
            labels.pop(PLUGIN_LABEL, None)
            address = published_address(row)
            if address and ADDRESS_TAG not in labels:
                labels[ADDRESS_TAG] = address
            out.append(
                Description(
                    id=str(row["Id"])[:12],
                    logical_id=labels.get(LOGICAL_ID_TAG),
                    tags=labels,
                    properties=_summary(row) if properties else None,
                )
            )
        return out

    def info(self) -> dict[str, Any]:
        """Properties schema and example for ``infrakit instance info``."""
        return {"schema": PROPERTIES_SCHEMA, "example": PROPERTIES_EXAMPLE}

    def _inspect_ours(self, instance_id: str) -> dict[str, Any]:
        """The container named by ``instance_id`` (short ID, full ID or name), if we created it."""
        import docker.errors

        if not instance_id or "/" in instance_id:
            raise NotFoundError(
                f"instance {instance_id!r} not found: expected a container ID such as "
                f"3f4e5d6c7b8a (list them with: infrakit instance describe)"
            )
        api = self._api()
        try:
            attrs: dict[str, Any] = self._call(
                lambda: api.inspect_container(instance_id), f"inspect container {instance_id}"
            )
        except docker.errors.NotFound:
            attrs = {}
        full_id = str(attrs.get("Id", ""))
        names = {str(attrs.get("Name", "")).lstrip("/")}
        exact = instance_id in (full_id, full_id[:12]) or instance_id in names
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        if not attrs or not exact or PLUGIN_LABEL not in labels:
            raise NotFoundError(
                f"instance {instance_id} not found among the containers infrakit created on "
                f"{self.host}; list them with: infrakit instance describe"
            )
        return attrs

    # --- events ---------------------------------------------------------------------------------

    def topics(self) -> list[str]:
        return [TOPIC_INSTANCE_CHANGE]

    def subscribe(self, topic: str) -> AsyncIterator[Event]:
        return self._broker.subscribe(topic)

    async def start(self) -> None:
        """Start following the engine's events (reconnecting forever until :meth:`stop`)."""
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        self._events_thread = threading.Thread(
            target=self._follow_events, name=f"{self.name} engine events", daemon=True
        )
        self._events_thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        self._close_stream()
        thread, self._events_thread = self._events_thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 5.0)
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _close_stream(self) -> None:
        with self._stream_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()

    def _follow_events(self) -> None:
        """Event thread: read the engine's container events; reconnect when the stream breaks."""
        delay = _RECONNECT_FIRST
        was_lost = False
        while not self._stopping.is_set():
            client = None
            try:
                client = self._connect()
                stream = client.events(decode=True, filters={"type": "container"})
                with self._stream_lock:
                    if self._stopping.is_set():
                        stream.close()
                        return
                    self._stream = stream
                self.events_connected.set()
                delay = _RECONNECT_FIRST
                if was_lost:
                    log.info("engine events at %s are back", self.host)
                    self._publish(
                        Event(TOPIC_INSTANCE_CHANGE, "resync", message="engine reconnected")
                    )
                for raw in stream:
                    self._on_engine_event(raw)
            except Exception as exc:
                if not self._stopping.is_set() and not was_lost:
                    log.warning("engine events at %s unavailable: %s; retrying", self.host, exc)
            finally:
                self.events_connected.clear()
                self._close_stream()
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
            if self._stopping.is_set():
                return
            if not was_lost:
                log.info("engine event stream at %s ended; reconnecting", self.host)
            was_lost = True
            self._stopping.wait(delay)
            delay = min(delay * 2, _RECONNECT_CAP)

    def _on_engine_event(self, raw: Any) -> None:
        if not isinstance(raw, dict) or raw.get("Type", "container") != "container":
            return
        action = str(raw.get("Action") or raw.get("status") or "")
        change = _EVENT_TYPES.get(action)
        attributes = (raw.get("Actor") or {}).get("Attributes") or {}
        if change is None or PLUGIN_LABEL not in attributes:
            return
        container_id = str(raw.get("id") or (raw.get("Actor") or {}).get("ID") or "")[:12]
        name = str(attributes.get("name", ""))
        self._publish(
            Event(
                TOPIC_INSTANCE_CHANGE,
                change,
                id=container_id,
                message=f"container {name or container_id} {action}",
                data={"Action": action, "Name": name},
            )
        )

    def _publish(self, event: Event) -> None:
        self._broker.publish_from_thread(self._loop, TOPIC_INSTANCE_CHANGE, event)


def published_address(row: dict[str, Any]) -> str:
    """``HOST:PORT`` of the container's first published TCP port (lowest container port), as
    the engine's list entry reports it ("" when none is published). A wildcard host (``0.0.0.0``,
    ``::``, none) is reached on 127.0.0.1."""
    ports = [
        p
        for p in row.get("Ports") or []
        if isinstance(p, dict) and p.get("PublicPort") and p.get("Type", "tcp") == "tcp"
    ]
    if not ports:
        return ""
    first = min(ports, key=lambda p: (int(p.get("PrivatePort") or 0), ":" in str(p.get("IP"))))
    host = str(first.get("IP") or "")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"{host}:{int(first['PublicPort'])}"


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    """What ``DescribeInstances(properties=true)`` reports: the engine's list entry, trimmed."""
    names = row.get("Names") or []
    return {
        "Name": str(names[0]).lstrip("/") if names else "",
        "Image": row.get("Image"),
        "Command": row.get("Command"),
        "State": row.get("State"),
        "Status": row.get("Status"),
        "Created": row.get("Created"),
        "Ports": row.get("Ports") or [],
    }


def _api_client(host: str) -> Any:
    """A low-level docker-py client for ``host`` (API version negotiated with the engine)."""
    try:
        import docker
    except ImportError:  # pragma: no cover - depends on the installation
        raise PluginError(
            "the docker plugin needs the docker package: pip install 'pyinfrakit[docker]'"
        ) from None
    return docker.APIClient(base_url=host, version="auto", timeout=60)
