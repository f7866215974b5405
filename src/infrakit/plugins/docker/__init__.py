"""The ``docker`` instance plugin: every instance is a container on a Docker-API engine.

It talks the Docker Engine API through docker-py, so it drives Docker itself or podman's
compatible service (``podman system service``); infrakit's own tests run it against podman. See
docs/plugins/docker.md for the whole contract. In short:

* **Provision** creates and starts one container from ``Properties`` written in the Engine API's
  names (``Image``, ``Cmd``, ``Entrypoint``, ``Env``, ``Ports``, ``Volumes``, ``RestartPolicy``,
  ``NetworkMode``, ``StopTimeout``). The image must already be on the engine: infrakit never pulls.
  A flavor's ``Init`` runs in the container before the command (``sh -c '<Init>; exec "$@"'``).
* **Tags are container labels** (all of them, plus ``infrakit.logical_id`` for pets, plus
  ``infrakit.docker.plugin`` marking the container as ours). The instance ID is the container's
  short (12-hex) ID, as ``docker ps`` / ``podman ps`` show it.
* **DescribeInstances** lists our containers that are running, restarting or paused, filtered by
  label (all tags must match; a wanted ``""`` also matches a missing label). Exited containers are
  not instances: the group replaces them, and they stay on the engine for ``podman logs``.
* **Destroy** stops the container (SIGTERM, SIGKILL after its ``StopTimeout``) and removes it.
* **Label is not supported**: a container's labels are fixed when it is created. The Go group
  controller only labels instances in its "bootstrap" flow, which does not apply to containers.
* **Events**: the engine's container events (start, die, remove/destroy, pause) are published on
  ``instance/change``, so the group controller heals a killed container in well under a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infrakit._utils.lazy import lazy_exports

if TYPE_CHECKING:
    from infrakit.plugins.docker.kind import KIND
    from infrakit.plugins.docker.plugin import DockerInstancePlugin

__all__ = ["KIND", "DockerInstancePlugin"]

__getattr__ = lazy_exports(__name__, {"KIND": ".kind", "DockerInstancePlugin": ".plugin"})
