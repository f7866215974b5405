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

from infrakit.plugins.combo.plugin import ComboFlavor, build
from infrakit.spi.plugin import Kind

__all__ = ["KIND", "ComboFlavor"]

KIND = Kind(
    name="combo",
    default_name="flavor-combo",
    summary="combines several flavors into one",
    build=build,
)
