"""The docker instance plugin's implementation (work in progress)."""

from __future__ import annotations

from infrakit.errors import SpecError
from infrakit.spi.plugin import Context, Option, Served

HOST_OPTION = Option(
    "host",
    "the engine's address (default: unix:///var/run/docker.sock)",
    default="unix:///var/run/docker.sock",
    env="DOCKER_HOST",
)


def build(ctx: Context) -> Served:
    raise SpecError("plugin kind docker is not finished yet")
