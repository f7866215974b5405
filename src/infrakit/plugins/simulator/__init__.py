"""The ``simulator`` plugin: a fake cloud with injectable faults, served like a real provider.

One process serves an instance plugin and a flavor under one name (default ``simulator``). The
instances are records (ID, LogicalID, Tags, Spec) kept in memory - or in a JSON state file
(``-o simulator.state=PATH``) so a restarted simulator keeps them - and nothing runs. What makes it
useful is the faults: Provision latency and failure rate, a lag before new instances appear in
DescribeInstances, instances that die at a fixed or random age, calls that hang, and the
flavor's Healthy answer. They are set per plugin (``-o simulator.faults=JSON``), per group (``Faults``
in the instance or flavor Properties), and at run time through a control file the simulator
watches (``-o simulator.control=PATH``) or the Python methods of :class:`SimulatorInstancePlugin`.
Random faults are reproducible with ``-o simulator.seed=N``.

It exists to exercise the group controller end to end - in-flight tracking, backoff, the crash-loop
breaker, health remediation - the way :class:`infrakit.testing.fakes.FakeInstancePlugin` does in
unit tests, but through real sockets and the CLI. Deaths, kills and other changes are published
on ``instance/change``. See docs/plugins/simulator.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infrakit._utils.lazy import lazy_exports

if TYPE_CHECKING:
    from infrakit.plugins.simulator.faults import Faults, parse_faults
    from infrakit.plugins.simulator.kind import KIND
    from infrakit.plugins.simulator.plugin import SimulatorFlavorPlugin, SimulatorInstancePlugin

__all__ = ["KIND", "Faults", "SimulatorFlavorPlugin", "SimulatorInstancePlugin", "parse_faults"]

__getattr__ = lazy_exports(
    __name__,
    {
        "KIND": ".kind",
        "Faults": ".faults",
        "parse_faults": ".faults",
        "SimulatorFlavorPlugin": ".plugin",
        "SimulatorInstancePlugin": ".plugin",
    },
)
