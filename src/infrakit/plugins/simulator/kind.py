"""The ``simulator`` kind: its options and its build (the plugin is imported by ``build`` only)."""

from __future__ import annotations

import json

from infrakit.errors import SpecError
from infrakit.spi.option import Option, duration, integer, path
from infrakit.spi.plugin import Context, Kind, Served, vendor_info

__all__ = [
    "CONTROL_OPTION",
    "CONTROL_POLL_OPTION",
    "FAULTS_OPTION",
    "KIND",
    "SEED_OPTION",
    "STATE_OPTION",
    "build",
]

FAULTS_OPTION = Option(
    "faults",
    'default faults for every group, a JSON object, e.g. {"ProvisionFailureRate": 0.2}',
    env="INFRAKIT_SIMULATOR_FAULTS",
)
SEED_OPTION = Option(
    "seed",
    "seed for the random faults (same seed + same calls = same failures and deaths)",
    env="INFRAKIT_SIMULATOR_SEED",
    parse=integer,
)
STATE_OPTION = Option(
    "state",
    "JSON file keeping the instances across restarts (default: in memory only)",
    env="INFRAKIT_SIMULATOR_STATE",
    parse=path,
)
CONTROL_OPTION = Option(
    "control",
    "control file watched for run-time faults, health and kills "
    "(default: INFRAKIT_HOME/simulator/<name>.control.json)",
    env="INFRAKIT_SIMULATOR_CONTROL",
    parse=path,
)
CONTROL_POLL_OPTION = Option(
    "control-poll",
    "how often the control file is checked (Go duration)",
    default="250ms",
    parse=duration,
)


def build(ctx: Context) -> Served:
    """Serve one simulator as an instance plugin and a flavor."""
    from infrakit.plugins.simulator.faults import parse_faults
    from infrakit.plugins.simulator.plugin import SimulatorInstancePlugin

    raw_faults = ctx.option(KIND, "faults")
    if isinstance(raw_faults, str):
        try:
            raw_faults = json.loads(raw_faults)
        except ValueError as exc:
            raise SpecError(
                f"simulator option faults: not JSON ({exc}); pass e.g. "
                f"-o 'simulator.faults={{\"ProvisionFailureRate\": 0.2}}'"
            ) from None
    defaults = parse_faults(raw_faults, "simulator option faults")
    control = ctx.option(KIND, "control")
    plugin = SimulatorInstancePlugin(
        defaults,
        seed=ctx.option(KIND, "seed"),
        state=ctx.option(KIND, "state"),
        control=control or ctx.home / "simulator" / f"{ctx.name.replace('/', '_')}.control.json",
        control_poll=ctx.option(KIND, "control-poll"),
        state_hint=ctx.another(KIND, "state"),
    )
    return Served(
        instance={"": plugin},
        flavor={"": plugin.flavor},
        events=plugin,
        start=plugin.start,
        stop=plugin.stop,
        vendor=vendor_info("infrakit-simulator"),
    )


KIND = Kind(
    name="simulator",
    default_name="simulator",
    summary="simulated instances and flavor with injectable faults (latency, failures, deaths)",
    build=build,
    options=(FAULTS_OPTION, SEED_OPTION, STATE_OPTION, CONTROL_OPTION, CONTROL_POLL_OPTION),
)
