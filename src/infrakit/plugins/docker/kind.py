"""The ``docker`` kind: its option and its build (docker-py and the plugin are imported by
``build`` only)."""

from __future__ import annotations

from infrakit.errors import SpecError
from infrakit.spi.option import Option, Parser
from infrakit.spi.plugin import Context, Kind, Served, vendor_info

__all__ = ["DEFAULT_HOST", "HOST_OPTION", "KIND", "build"]

DEFAULT_HOST = "unix:///var/run/docker.sock"


def _address(text: str) -> str:
    if "://" not in text:
        raise ValueError("no scheme")
    return text


#: An engine API address with its scheme.
engine_address = Parser(
    "URL",
    "an address such as unix:///var/run/docker.sock or tcp://127.0.0.1:2375",
    DEFAULT_HOST,
    _address,
)

HOST_OPTION = Option(
    "host",
    "the engine's API address, e.g. unix:///run/podman/podman.sock or tcp://127.0.0.1:2375",
    default=DEFAULT_HOST,
    env="DOCKER_HOST",
    parse=engine_address,
)


def build(ctx: Context) -> Served:
    """Serve a :class:`~infrakit.plugins.docker.plugin.DockerInstancePlugin` for ``host``."""
    try:
        import docker  # noqa: F401 - fail at start, not at the first call
    except ImportError:
        raise SpecError(
            "plugin kind docker needs the docker package (docker-py); install it with: "
            "pip install 'pyinfrakit[docker]'"
        ) from None
    from infrakit.plugins.docker.plugin import DockerInstancePlugin

    plugin = DockerInstancePlugin(ctx.option(KIND, "host"), name=ctx.name)
    return Served(
        instance={"": plugin},
        events=plugin,
        start=plugin.start,
        stop=plugin.stop,
        vendor=vendor_info("infrakit-instance-docker"),
    )


KIND = Kind(
    name="docker",
    default_name="instance-docker",
    summary="instances as containers on a Docker-API engine (Docker, or podman system service)",
    build=build,
    options=(HOST_OPTION,),
)
