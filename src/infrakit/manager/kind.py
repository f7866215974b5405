"""The ``manager`` plugin kind: the HA manager served as ``group`` (what ``infrakit up`` runs).

Options (``-o manager.OPTION=VALUE`` on ``plugin start``; flags of ``infrakit up``):

* ``store`` - where specs and update progress live: a file path (default
  ``<INFRAKIT_HOME>/store.json``), ``memory``, or ``etcd://HOST:PORT[/prefix]``
  (``INFRAKIT_GROUP_STORE`` is honoured too).
* ``leader`` - election backend: ``file`` (a lock next to the store; several managers on one host,
  exactly one leads) or ``etcd`` (across hosts; lease TTL ``ttl``). Default: ``etcd`` when the
  store is etcd (``file`` with an etcd store is refused), else ``file``.
* ``id`` - this member's name (default ``<hostname>-<pid>``).
* ``listen`` - ``HOST:PORT`` where followers reach this manager when it leads. Requires a token
  unless HOST is loopback and ``insecure`` is set.
* ``token-file`` - a file (mode 0600, yours) holding the shared token for manager-to-manager
  TCP; else ``INFRAKIT_TOKEN_FILE``. Recommended over ``token``: a value on the command line shows
  in ``ps``.
* ``token`` - the shared token itself; else ``INFRAKIT_TOKEN``. Followers never send it: the
  leader proves it holds the same token for the address in the leader record, then each forwarded
  call is signed (:mod:`infrakit.rpc.auth`).
* ``insecure`` - allow ``listen`` on loopback without a token (logs a WARNING: whoever can reach
  the port can commit, and so run code as this user).
* ``tls-cert`` / ``tls-key`` / ``tls-ca`` - serve and call the TCP endpoint over TLS.
* ``etcd`` - etcd endpoint for ``leader=etcd`` when the store is not etcd.
* ``ttl`` - etcd lease TTL.
* ``poll-interval`` - the group controller's resync period (the ``group`` kind's option).
* ``http`` - ``HOST:PORT`` of the status page and health endpoints (the ``group`` kind's option;
  off loopback it needs ``token``/``token-file`` or ``tls-cert``).

Defaults and environment variables are declared once, below (``infrakit plugin kinds`` lists
them). Listing this kind imports nothing of the manager: ``build`` imports
:mod:`infrakit.manager.wiring`, which checks every option before anything listens.
"""

from __future__ import annotations

from infrakit.controller.group.kind import HTTP_OPTION, POLL_INTERVAL_OPTION
from infrakit.spi.option import Option, choice, duration, flag, host_port
from infrakit.spi.plugin import Context, Kind, Served

__all__ = ["KIND", "OPTIONS", "build"]

OPTIONS = (
    Option(
        "store",
        "spec store: file path, 'memory' or etcd://host:port[/prefix]",
        env="INFRAKIT_MANAGER_STORE",
    ),
    Option(
        "leader",
        "election backend: file or etcd (default: etcd with an etcd store, else file)",
        env="INFRAKIT_MANAGER_LEADER",
        parse=choice("file", "etcd"),
    ),
    Option("id", "this member's name (default <hostname>-<pid>)", env="INFRAKIT_MANAGER_ID"),
    Option(
        "listen", "HOST:PORT followers forward to", env="INFRAKIT_MANAGER_LISTEN", parse=host_port
    ),
    Option("token", "shared token for manager TCP (prefer token-file: ps shows this)"),
    Option("token-file", "file holding the shared token (mode 0600)"),
    Option("insecure", "allow --listen on loopback without a token", default=False, parse=flag),
    Option("tls-cert", "TLS certificate (PEM) for the TCP endpoint"),
    Option("tls-key", "TLS private key (PEM)"),
    Option("tls-ca", "CA bundle (PEM) to verify other managers"),
    Option(
        "etcd",
        "etcd endpoint for leader=etcd",
        default="127.0.0.1:2379",
        env="INFRAKIT_ETCD_ENDPOINT",
    ),
    Option("ttl", "etcd lease TTL (Go duration)", default="2s", parse=duration),
    POLL_INTERVAL_OPTION,
    HTTP_OPTION,
)


async def build(ctx: Context) -> Served:
    from infrakit.manager import wiring

    return await wiring.build(ctx)


KIND = Kind(
    name="manager",
    default_name="group",
    summary="HA manager: the group controller with leader election and forwarding",
    build=build,
    options=OPTIONS,
)
