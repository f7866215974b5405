"""infrakit's version: one home, read by the package metadata (pyproject), ``infrakit version``,
and the ``Vendor`` block every plugin of infrakit serves."""

__version__ = "0.1.0"
