"""First-party plugins, one package each, registered as kinds under the ``infrakit.plugins``
entry-point group exactly as a third-party plugin package would be.

* :mod:`infrakit.plugins.file` - instances as JSON files in a directory (InfraKit's reference plugin)
* :mod:`infrakit.plugins.vanilla` - init lines, tags and attachments added to every instance
* :mod:`infrakit.plugins.combo` - several flavors combined into one

Plugins depend only on :mod:`infrakit.spi` (and each other never): they receive lookups for other
plugins through :class:`infrakit.spi.plugin.Context` and never open sockets themselves.
"""
