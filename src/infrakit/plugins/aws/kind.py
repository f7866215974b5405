"""The ``aws`` kind: its options and its build (boto3 and the plugin are imported by ``build`` only)."""

from __future__ import annotations

import logging

from infrakit.spi.option import Option
from infrakit.spi.plugin import Context, Kind, Served, vendor_info

__all__ = ["ENDPOINT_URL_OPTION", "KIND", "REGION_OPTION", "build"]

log = logging.getLogger(__name__)

REGION_OPTION = Option(
    "region",
    "AWS region (default: the standard chain, AWS_REGION / AWS_DEFAULT_REGION / ~/.aws/config)",
    env="INFRAKIT_AWS_REGION",
)
ENDPOINT_URL_OPTION = Option(
    "endpoint-url",
    "EC2 endpoint URL, e.g. a local moto_server (botocore also honours AWS_ENDPOINT_URL)",
)


def build(ctx: Context) -> Served:
    """Serve an :class:`~infrakit.plugins.aws.plugin.EC2InstancePlugin` as ``<name>`` and
    ``<name>/ec2-instance``."""
    from infrakit.plugins.aws.plugin import INSTANCE_TYPE_NAME, EC2InstancePlugin

    plugin = EC2InstancePlugin.connect(
        region=ctx.option(KIND, "region"), endpoint_url=ctx.option(KIND, "endpoint-url")
    )
    log.info("EC2 in %s at %s", plugin.client.meta.region_name, plugin.client.meta.endpoint_url)

    async def stop() -> None:
        plugin.close()

    return Served(
        instance={"": plugin, INSTANCE_TYPE_NAME: plugin},
        stop=stop,
        vendor=vendor_info("infrakit-instance-aws"),
    )


KIND = Kind(
    name="aws",
    default_name="aws",
    summary="EC2 instances via boto3 (InfraKit's aws/ec2-instance)",
    build=build,
    options=(REGION_OPTION, ENDPOINT_URL_OPTION),
)
