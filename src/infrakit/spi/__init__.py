"""The contract between infrakit's parts: typing Protocols and wire models, no I/O.

``instance``, ``flavor`` and ``group`` are the three plugin interfaces of InfraKit; ``event`` is
how plugins tell others that something changed; ``types`` holds what they share. Import modules,
not names: ``from infrakit.spi import instance`` then ``instance.Spec`` reads like the protocol.
"""

from infrakit.spi import event, flavor, group, instance, types

__all__ = ["event", "flavor", "group", "instance", "types"]
