"""What a daemon and the CLI import to start (issue 10): the spec models (pydantic), Jinja2, YAML
and ``importlib.metadata`` are loaded when first needed, not by ``infrakit up`` or a console-script
daemon before it answers; a process serving a group controller warms the spec models on a thread.

Each check runs in a fresh interpreter, so what this test process imported does not count."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

#: Heavy modules a start must not load (what they cost: docs/benchmarks.md).
LAZY = ("pydantic", "jinja2", "yaml", "importlib.metadata")


def _loaded_after(code: str) -> set[str]:
    """The LAZY modules loaded once ``code`` has run in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {LAZY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=50, check=True
    )
    return set(out.stdout.split())


def test_starting_up_and_the_daemons_loads_no_spec_models_templates_or_entry_points() -> None:
    # Everything `infrakit up` and `infrakit-group-default` import before they serve, and the
    # kinds they register instead of reading entry points.
    code = """
import infrakit.cli.up, infrakit.cli.daemons
import infrakit.launch.stack, infrakit.launch.host, infrakit.launch.registry as registry
import infrakit.manager.kind, infrakit.manager.wiring, infrakit.controller.group.kind
import infrakit.controller.group.controller, infrakit.controller.group.status
import infrakit.plugins.file.plugin, infrakit.plugins.vanilla.plugin, infrakit.plugins.combo.plugin
from infrakit.plugins.file.kind import KIND
registry.register(KIND)
registry.parse_spec("file:instance-file")
"""
    assert _loaded_after(code) == set()


def test_the_models_load_with_the_first_spec_and_give_the_same_settings() -> None:
    code = """
from infrakit.controller.group.spec import parse_spec
from infrakit.spi.group import Spec
s = parse_spec(Spec("a", {"Allocation": {"size": 2}, "Instance": {"Plugin": "i"},
                          "Flavor": {"Plugin": "f"}}))
assert s.size == 2 and s.properties.provisioning.max_parallel == 100
"""
    assert "pydantic" in _loaded_after(code)


def test_a_plain_init_line_needs_no_template_engine_and_a_template_loads_it() -> None:
    plain = """
from infrakit.plugins.vanilla.plugin import parse_properties, render_init
assert render_init(parse_properties({"Init": ["echo hi"]}), {}) == ["echo hi"]
"""
    assert "jinja2" not in _loaded_after(plain)
    templated = """
from infrakit.plugins.vanilla.plugin import parse_properties, render_init
assert render_init(parse_properties({"Init": ["echo {{ 1 + 1 }}"]}), {}) == ["echo 2"]
"""
    assert "jinja2" in _loaded_after(templated)


def test_a_group_controller_process_warms_the_spec_models_once_it_answers() -> None:
    code = """
import sys, time
from infrakit.launch import stack
stack._warm_in_background(stack._GROUP_SPEC_MODELS)
deadline = time.monotonic() + 40
def done():  # the module is in sys.modules from its first line on: wait for its last class
    return hasattr(sys.modules.get("infrakit.controller.group.sections"), "GroupProperties")
while not done() and time.monotonic() < deadline:
    time.sleep(0.01)
assert done()
"""
    assert "pydantic" in _loaded_after(code)


def test_a_kind_looked_up_without_being_registered_still_comes_from_the_entry_points() -> None:
    code = """
from infrakit.launch import registry
assert registry.get_kind("simulator").name == "simulator"
"""
    assert "importlib.metadata" in _loaded_after(code)
