"""The ``process`` instance plugin: every instance is a local OS process.

Properties name what to run: ``{"Command": ["sleep", "1000"], "Dir": "/srv", "Env": {"K": "V"}}``;
``"Port": "auto"`` gives each instance a free port (``$PORT``, tag ``infrakit.address``).
The flavor's Init, when not empty, runs first as ``sh -c <Init>`` in the same Dir and Env and must
exit 0 before the Command starts (Provision fails with the Init's last output line otherwise).

Each instance is a session leader (``setsid``), so instances survive a restart of the plugin, which
re-adopts them from the records it keeps in its directory (``-o process.dir``, env
``INFRAKIT_INSTANCE_PROCESS_DIR``, default ``$INFRAKIT_HOME/processes``): one ``<ID>.json`` per
instance (tags, spec, pid, start time) and one ``<ID>.log`` with its stdout and stderr. The start
time guards against pid reuse; zombies never count as running.

Exits are watched with pidfds (polling where the kernel has none), so a process that exits or is
killed by someone else is reported on ``instance/change`` at once and the group heals in
milliseconds. Destroy sends SIGTERM to the process group and SIGKILL after ``-o process.grace``
(default 10s). ``-o process.allow=/usr/bin/*,/opt/app/bin/*`` limits what instances may run
(globs on the resolved executable; a Command or Init outside it is refused at commit/provision).
See docs/plugins/process.md and docs/security.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infrakit._utils.lazy import lazy_exports

if TYPE_CHECKING:
    from infrakit.plugins.process.kind import KIND
    from infrakit.plugins.process.plugin import (
        ProcessCommand,
        ProcessInstancePlugin,
        parse_properties,
    )

__all__ = ["KIND", "ProcessCommand", "ProcessInstancePlugin", "parse_properties"]

__getattr__ = lazy_exports(
    __name__,
    {
        "KIND": ".kind",
        "ProcessCommand": ".plugin",
        "ProcessInstancePlugin": ".plugin",
        "parse_properties": ".plugin",
    },
)
