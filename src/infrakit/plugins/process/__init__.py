"""The ``process`` instance plugin: every instance is a local OS process.

Properties name what to run: ``{"Command": ["sleep", "1000"], "Dir": "/srv", "Env": {"K": "V"}}``.
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

from infrakit.plugins.process.plugin import (
    ALLOW_OPTION,
    DIR_OPTION,
    GRACE_OPTION,
    ProcessCommand,
    ProcessInstancePlugin,
    build,
    parse_properties,
)
from infrakit.spi.plugin import Kind

__all__ = ["KIND", "ProcessCommand", "ProcessInstancePlugin", "parse_properties"]

KIND = Kind(
    name="process",
    default_name="instance-process",
    summary="instances as local OS processes (re-adopted after a restart, exits heal at once)",
    build=build,
    options=(DIR_OPTION, GRACE_OPTION, ALLOW_OPTION),
)
