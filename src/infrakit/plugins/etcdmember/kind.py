"""The ``etcd-member`` kind (the plugin module is imported by ``build`` only)."""

from __future__ import annotations

from infrakit.spi.plugin import Context, Kind, Served, vendor_info

__all__ = ["KIND", "build"]


def build(ctx: Context) -> Served:
    from infrakit.plugins.etcdmember.plugin import EtcdMemberFlavor

    return Served(
        flavor={"": EtcdMemberFlavor()}, vendor=vendor_info("infrakit-flavor-etcd-member")
    )


KIND = Kind(
    name="etcd-member",
    default_name="flavor-etcd-member",
    summary="members of an etcd cluster, one per logical ID (flags, member API joins, /health)",
    build=build,
)
