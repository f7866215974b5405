"""The ``aws`` instance plugin: every instance is one EC2 instance (InfraKit's ``aws/ec2-instance``).

Run it with ``infrakit plugin start aws`` (socket ``aws``; group specs name it ``aws`` or
``aws/ec2-instance``). Credentials and region come from boto3's standard chain (environment,
``~/.aws``, instance role); ``-o aws.region=`` and ``-o aws.endpoint-url=`` override them (the
latter points the plugin at an EC2-compatible endpoint such as a local ``moto_server``).

Instance Properties are InfraKit's ``{"RunInstancesInput": {...}, "Tags": {...}}`` - the EC2
RunInstances parameters, spelled as the EC2 API spells them, so Go InfraKit specs work unchanged -
or, equally, those parameters at the top level next to an optional ``Tags``. See
``docs/plugins/aws.md``.

EC2 is the only source of truth: membership and configuration live in instance tags, nothing is
kept in the plugin. EC2 publishes no events here, so the group controller notices an instance
terminated behind its back at its next poll (``-o group.poll-interval``).
"""

from __future__ import annotations

from infrakit.plugins.aws.plugin import (
    ENDPOINT_URL_OPTION,
    REGION_OPTION,
    EC2InstancePlugin,
    build,
)
from infrakit.spi.plugin import Kind

__all__ = ["KIND", "EC2InstancePlugin"]

KIND = Kind(
    name="aws",
    default_name="aws",
    summary="EC2 instances via boto3 (InfraKit's aws/ec2-instance)",
    build=build,
    options=(REGION_OPTION, ENDPOINT_URL_OPTION),
)
