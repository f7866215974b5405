"""Spec files as people write them: JSON or YAML, optionally a sandboxed Jinja2 template.

The one home of YAML and Jinja2 in infrakit (an import-linter contract keeps ``yaml`` and
``jinja2`` imports here): :mod:`.documents` parses JSON/YAML text into JSON values with the
place of every key, :mod:`.template` renders templates in a sandbox (:mod:`.syntax` tells a
template from plain text without loading Jinja2), :mod:`.reader` puts both
together for the CLI and ``infrakit up``, :mod:`.diff` compares two specs field by field.
"""
