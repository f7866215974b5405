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

from infrakit.plugins.simulator.faults import Faults, parse_faults
from infrakit.plugins.simulator.plugin import (
    CONTROL_OPTION,
    CONTROL_POLL_OPTION,
    FAULTS_OPTION,
    SEED_OPTION,
    STATE_OPTION,
    SimulatorFlavorPlugin,
    SimulatorInstancePlugin,
    build,
)
from infrakit.spi.plugin import Kind

__all__ = ["KIND", "Faults", "SimulatorFlavorPlugin", "SimulatorInstancePlugin", "parse_faults"]

KIND = Kind(
    name="simulator",
    default_name="simulator",
    summary="simulated instances and flavor with injectable faults (latency, failures, deaths)",
    build=build,
    options=(FAULTS_OPTION, SEED_OPTION, STATE_OPTION, CONTROL_OPTION, CONTROL_POLL_OPTION),
)
