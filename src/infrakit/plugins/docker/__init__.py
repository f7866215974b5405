"""The ``docker`` instance plugin: every instance is a container on a Docker-API engine (work in progress)."""

from __future__ import annotations

from infrakit.plugins.docker.plugin import HOST_OPTION, build
from infrakit.spi.plugin import Kind

__all__ = ["KIND"]

KIND = Kind(
    name="docker",
    default_name="instance-docker",
    summary="instances as containers on a Docker-API engine (Docker, or podman system service)",
    build=build,
    options=(HOST_OPTION,),
)
