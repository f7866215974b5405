"""The ``aws`` instance plugin: every instance is one EC2 instance (work in progress)."""

from __future__ import annotations

from infrakit.plugins.aws.plugin import build
from infrakit.spi.plugin import Kind

__all__ = ["KIND"]

KIND = Kind(
    name="aws",
    default_name="aws",
    summary="EC2 instances (InfraKit's aws/ec2-instance)",
    build=build,
)
