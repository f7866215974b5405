"""The contract between infrakit's parts: typing Protocols and wire models, no I/O.

``instance``, ``flavor`` and ``group`` are the three plugin interfaces of InfraKit; ``event`` is
how plugins tell others that something changed; ``plugin`` describes runnable plugin kinds;
``adapt`` wraps sync or async plugin objects into the uniform async protocol; ``types`` holds what
they share. Import modules, not names: ``from infrakit.spi import instance`` then
``instance.Spec`` reads like the protocol. (Nothing is imported here, so loading one module stays
cheap for the CLI.)
"""
