"""The ``file`` instance plugin: every instance is one JSON file in a directory.

This is InfraKit's reference provider (``infrakit-instance-file``) and the one its tutorials use:
deleting a file is how a user "kills" an instance and watches the group controller heal it. It is
wire- and disk-compatible with InfraKit's: file name = instance ID ``instance-<int63>``, content
``{"ID", "LogicalID", "Tags", "Spec"}``, so a directory written by the Go plugin is adopted as is.

Where we differ from InfraKit, on purpose:

* the default directory is ``~/.infrakit/instances`` (``$INFRAKIT_HOME/instances``), not ``/tmp``;
* writes are atomic (a dot-prefixed temporary file renamed into place), so a reader never sees half
  an instance;
* files that are not instance records (a README, an editor's swap file) are skipped with one warning
  each instead of becoming phantom instances;
* the directory is watched (inotify, falling back to polling once a second) and every change is
  published as an event on topic ``instance/change``, so the group controller heals a deleted
  instance in milliseconds instead of at its next poll.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infrakit._utils.lazy import lazy_exports

if TYPE_CHECKING:
    from infrakit.plugins.file.kind import KIND
    from infrakit.plugins.file.plugin import FileInstancePlugin

__all__ = ["KIND", "FileInstancePlugin"]

__getattr__ = lazy_exports(__name__, {"KIND": ".kind", "FileInstancePlugin": ".plugin"})
