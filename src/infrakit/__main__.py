"""``python -m infrakit`` is the ``infrakit`` command."""

from infrakit.cli import main

main()
