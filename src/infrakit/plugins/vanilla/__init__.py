"""The ``vanilla`` flavor: add init lines, tags and attachments to every instance of a group.

Properties (InfraKit's, both eras)::

    {
      "Init": ["docker pull nginx:alpine", "docker run -d -p 80:80 nginx:alpine"],
      "Tags": {"tier": "web"},
      "Attachments": [{"ID": "vol-1", "Type": "volume"}],
      "InitScriptTemplateURL": "file:///etc/infrakit/init.sh"
    }

* ``Init`` - a list of lines (a single string is accepted too); appended to the spec's Init,
  joined with newlines.
* ``InitScriptTemplateURL`` - instead of ``Init``: a ``file://`` path or an inline ``str://``
  script, used verbatim (InfraKit rendered it as a template; we do not run a template engine).
  Giving both is rejected with InfraKit's message.
* ``Tags`` - merged over the spec's tags (the flavor wins).
* ``Attachments`` - appended to the spec's attachments (SEED's bare strings accepted).

``null`` Properties mean "nothing to add" (the SEED plugin crashed on them). Healthy is always
HEALTHY - vanilla knows nothing about the software it starts - and Drain does nothing.
"""

from __future__ import annotations

from infrakit.plugins.vanilla.plugin import VanillaFlavor, VanillaProperties, build
from infrakit.spi.plugin import Kind

__all__ = ["KIND", "VanillaFlavor", "VanillaProperties"]

KIND = Kind(
    name="vanilla",
    default_name="flavor-vanilla",
    summary="adds init lines, tags and attachments to every instance",
    build=build,
)
