"""The ``combo`` flavor: run several flavors on every instance, as if they were one.

Properties are a list of ``{"Plugin": <flavor name>, "Properties": <its properties>}``, as a bare
array (InfraKit HEAD) or wrapped as ``{"Flavors": [...]}`` (InfraKit SEED); both are accepted::

    [
      {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo one"]}},
      {"Plugin": "flavor-vanilla", "Properties": {"Init": ["echo two"], "Tags": {"b": "2"}}}
    ]

* Validate: every element must name a plugin, and each sub-flavor must accept its properties.
* Prepare: each sub-flavor prepares its own copy of the incoming spec with an empty Init; the
  results are merged in order - tags (later wins), Init lines joined with newlines after the
  incoming Init, attachments concatenated. (InfraKit passed the full Init to each sub-flavor and so
  duplicated it; we do not.)
* Healthy: the worst answer wins - UNHEALTHY over UNKNOWN over HEALTHY. A sub-flavor that fails to
  answer counts as UNKNOWN (not UNHEALTHY: a flaky health endpoint must not get instances killed).
* Drain: every sub-flavor's Drain runs even when one fails; the failures are reported together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infrakit._utils.lazy import lazy_exports

if TYPE_CHECKING:
    from infrakit.plugins.combo.kind import KIND
    from infrakit.plugins.combo.plugin import ComboFlavor

__all__ = ["KIND", "ComboFlavor"]

__getattr__ = lazy_exports(__name__, {"KIND": ".kind", "ComboFlavor": ".plugin"})
