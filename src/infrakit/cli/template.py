"""``infrakit template render FILE``: print a spec template rendered (thin: parse, call
:mod:`infrakit.specfile`, print).

The same rendering ``group commit``, ``group validate`` and ``up`` do before they read a spec:
vars from ``--var``, ``--vars-file`` and the file's ``Vars`` section, includes from the file's
directory tree, the sandbox's limits. ``-o json|yaml`` prints the parsed result instead of the
text (converting YAML to JSON or back).
"""

from __future__ import annotations

import click

from infrakit.cli._common import OUTPUT_FORMATS, echo_doc, read_spec, template_options

__all__ = ["template_cli"]


@click.group("template")
def template_cli() -> None:
    """Render spec templates."""


@template_cli.command("render")
@click.argument("spec_file", metavar="FILE")
@template_options
@click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUT_FORMATS),
    default="text",
    help="text: the rendered text; json, yaml: the parsed result",
)
def render(
    spec_file: str, var_pairs: tuple[str, ...], vars_files: tuple[str, ...], output: str
) -> None:
    """Render FILE (`-` for stdin) and print it; a file that is no template prints as it is."""
    spec = read_spec(spec_file, var_pairs, vars_files)
    if output != "text":
        echo_doc(spec.value, output)
        return
    text = spec.rendered if spec.rendered is not None else spec.document.text
    click.echo(text, nl=not text.endswith("\n"))
