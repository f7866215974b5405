"""The ``etcd-member`` flavor: a group of pets (``Allocation.LogicalIDs``) that is an etcd cluster.

Properties::

    {
      "DataDir": "/var/lib/infrakit-etcd",      # required; member data in DataDir/<logical ID>
      "Host": "127.0.0.1",                      # where members listen (default 127.0.0.1)
      "ClientPortBase": 23790,                  # the i-th logical ID gets client port base + i
      "PeerPortBase": 23800,                    # ... and peer port base + i
      "Token": "infrakit-etcd",                 # --initial-cluster-token (default infrakit-<group>)
      "Flags": ["--heartbeat-interval=100"],    # appended; changing them rolls the cluster
      "JoinTimeout": "30s"                      # how long a join waits for a healthy cluster
    }

Prepare renders each member's command line into the instance Properties' ``Command`` (the
``process`` instance plugin's shape; the instance's own Command, e.g. ``["etcd"]``, is the
prefix): name, data directory, client and peer URLs, ``--initial-cluster``,
``--initial-cluster-state`` and token. How a member starts depends on what its peers answer:

* a peer is healthy: the cluster runs, so this member *joins through the member API*: the entry
  of its dead incarnation (same peer URL) is removed, the new member added, and it starts as
  ``existing`` with a fresh data directory (its Init removes the old one);
* no peer answers: the cluster is being created (``new``, every logical ID in
  ``--initial-cluster``);
* peers answer but none is healthy (an election): Prepare waits up to ``JoinTimeout``, then starts
  the member ``new`` on its own data directory - etcd then restarts it from its data, the way back
  for a cluster that lost its quorum.

Healthy asks the member's own ``/health``: HEALTHY only when it has a leader and a quorum read
passed, so a rolling update that waits for the new member's readiness waits for the cluster's
leader too. Drain does nothing: etcd hands leadership over on the SIGTERM of Destroy. See
docs/plugins/etcd-member.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infrakit._utils.lazy import lazy_exports

if TYPE_CHECKING:
    from infrakit.plugins.etcdmember.kind import KIND
    from infrakit.plugins.etcdmember.plugin import EtcdMemberFlavor, EtcdMemberProperties

__all__ = ["KIND", "EtcdMemberFlavor", "EtcdMemberProperties"]

__getattr__ = lazy_exports(
    __name__,
    {"KIND": ".kind", "EtcdMemberFlavor": ".plugin", "EtcdMemberProperties": ".plugin"},
)
