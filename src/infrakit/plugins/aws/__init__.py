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

from typing import TYPE_CHECKING

from infrakit._utils.lazy import lazy_exports

if TYPE_CHECKING:
    from infrakit.plugins.aws.kind import KIND
    from infrakit.plugins.aws.plugin import EC2InstancePlugin

__all__ = ["KIND", "EC2InstancePlugin"]

__getattr__ = lazy_exports(__name__, {"KIND": ".kind", "EC2InstancePlugin": ".plugin"})
