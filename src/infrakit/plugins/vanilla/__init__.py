"""The ``vanilla`` flavor: add init lines, tags and attachments to every instance of a group.

Properties (InfraKit's, both eras)::

    {
      "Init": ["docker pull nginx:alpine", "docker run -d -p 80:80 nginx:alpine"],
      "Tags": {"tier": "web"},
      "Attachments": [{"ID": "vol-1", "Type": "volume"}],
      "InitScriptTemplateURL": "file:///etc/infrakit/init.sh"
    }

* ``Init`` - a list of lines (a single string is accepted too); appended to the spec's Init,
  joined with newlines. A line with ``{{``/``{%`` is a template (:mod:`infrakit.specfile.template`)
  rendered per instance with ``instance`` (ID, LogicalID, Group, Index, Tags) and Go's ``INDEX``
  (Group, Sequence): ``echo {{ instance.LogicalID }}``; other lines are used verbatim.
* ``InitScriptTemplateURL`` - instead of ``Init``: a local ``file://`` path or an inline
  ``str://`` script (no network), rendered the same way when it is a template (Jinja2 syntax,
  not Go's; includes from the file's directory). Giving both is rejected with InfraKit's message.
* ``Tags`` - merged over the spec's tags (the flavor wins).
* ``Attachments`` - appended to the spec's attachments (SEED's bare strings accepted).

``null`` Properties mean "nothing to add" (the SEED plugin crashed on them). Healthy is always
HEALTHY - vanilla knows nothing about the software it starts - and Drain does nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infrakit._utils.lazy import lazy_exports

if TYPE_CHECKING:
    from infrakit.plugins.vanilla.kind import KIND
    from infrakit.plugins.vanilla.plugin import VanillaFlavor, VanillaProperties

__all__ = ["KIND", "VanillaFlavor", "VanillaProperties"]

__getattr__ = lazy_exports(
    __name__, {"KIND": ".kind", "VanillaFlavor": ".plugin", "VanillaProperties": ".plugin"}
)
