"""The libvirt provider through the CLI: a group of real TCG virtual machines on a private
libvirtd (tests/libvirt_fixture.py), served by ``infrakit plugin start libvirt`` in its own
process and driven by ``infrakit plugin start group vanilla``.

The group's resync timer is a minute, so healing within the waits below comes from libvirt's
lifecycle events, not from polling.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit.testing.processes import Daemon
from tests.e2e.conftest import E2E, EXAMPLES, wait_for
from tests.libvirt_fixture import INIT_DONE, Hypervisor, libvirt_session

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture(scope="session")
def hypervisor() -> Iterator[Hypervisor]:
    yield from libvirt_session()


@pytest.fixture
def hv(hypervisor: Hypervisor) -> Iterator[Hypervisor]:
    if hypervisor.daemon is None or hypervisor.daemon.poll() is not None:
        hypervisor.start_daemon()
    yield hypervisor
    hypervisor.destroy_all()


def start_provider(e2e: E2E, hv: Hypervisor) -> Daemon:
    return e2e.start(
        "infrakit", "plugin", "start", "libvirt", *hv.plugin_options(), sockets=["instance-libvirt"]
    )


def start_group(e2e: E2E) -> Daemon:
    return e2e.start(
        "infrakit",
        "plugin",
        "start",
        "group",
        "vanilla",
        "-o",
        "group.poll-interval=60s",
        sockets=["group", "flavor-vanilla"],
    )


def spec(e2e: E2E, hv: Hypervisor, name: str, size: int, **props: Any) -> Path:
    """examples/libvirt.json with this hypervisor's guest (and ``props``) as Properties."""
    doc = json.loads((EXAMPLES / "libvirt.json").read_text())
    doc["Properties"]["Allocation"]["Size"] = size
    doc["Properties"]["Instance"]["Properties"] = hv.properties(**props)
    doc["Properties"]["Flavor"]["Properties"]["Init"] = ["echo hello-from-the-flavor"]
    path = e2e.home / name
    path.write_text(json.dumps(doc))
    return path


def memory_mib(hv: Hypervisor, name: str) -> int:
    match = re.search(r"<memory unit='KiB'>(\d+)</memory>", hv.virsh("dumpxml", name))
    assert match, name
    return int(match.group(1)) // 1024


def test_a_group_of_vms_heals_rolls_survives_a_provider_restart_and_is_destroyed(
    e2e: E2E, hv: Hypervisor
) -> None:
    provider = start_provider(e2e, hv)
    start_group(e2e)
    out = e2e.run("group", "commit", str(spec(e2e, hv, "v1.json", 3, Memory=128))).stdout
    assert out == "Committed vms: Managing 3 instances\n"
    first = wait_for(lambda: len(d := hv.domains()) == 3 and d, timeout=30, what="3 domains")
    assert len(hv.volumes()) == 3
    rows = e2e.lines("instance", "--name", "instance-libvirt", "describe")
    assert sum("tier=vm" in row and "infrakit.group=vms" in row for row in rows) == 3

    # Out of band, `virsh destroy` one VM: a lifecycle event heals it at once (resync is 60 s).
    victim = first[0]
    hv.virsh("destroy", victim)
    healed = wait_for(
        lambda: len(d := hv.domains()) == 3 and victim not in d and d,
        timeout=20,
        what="the destroyed VM replaced (well before the 60 s resync)",
    )
    wait_for(lambda: victim not in hv.domains(all=True), timeout=15, what="the victim reaped")
    newcomer = (set(healed) - set(first)).pop()
    wait_for(
        lambda: re.search(f"{INIT_DONE} rc=0\n", hv.console(newcomer)),
        timeout=90,
        what="the replacement booted and ran the flavor's Init",
    )
    assert "hello-from-the-flavor" in hv.console(newcomer)

    # The provider restarts: the instances are still listed, with their tags (from <metadata>).
    before = sorted(e2e.lines("instance", "--name", "instance-libvirt", "describe", "-q"))
    provider.stop()
    provider = start_provider(e2e, hv)
    assert sorted(e2e.lines("instance", "--name", "instance-libvirt", "describe", "-q")) == before
    assert sorted(hv.domains()) == sorted(healed)

    # A rolling update of the memory size replaces every VM.
    e2e.run("group", "commit", str(spec(e2e, hv, "v2.json", 3, Memory=160)))

    def rolled() -> bool:
        now = hv.domains()
        return (
            len(now) == 3
            and not set(now) & set(healed)
            and all(memory_mib(hv, n) == 160 for n in now)
        )

    wait_for(rolled, timeout=60, what="3 VMs with 160 MiB")
    wait_for(
        lambda: "converged" in e2e.run("group", "describe", "vms").stdout,
        timeout=30,
        what="the update finished",
    )

    # Destroy leaves no domain and no overlay.
    assert e2e.run("group", "destroy", "vms").stdout == "Destroy vms initiated\n"
    wait_for(
        lambda: hv.domains(all=True) == [] and hv.volumes() == [],
        timeout=30,
        what="no domain, no overlay",
    )
    assert e2e.lines("instance", "--name", "instance-libvirt", "describe", "-q") == []


def test_bad_properties_and_libvirtd_down_are_errors_and_no_action(
    e2e: E2E, hv: Hypervisor
) -> None:
    start_provider(e2e, hv)
    start_group(e2e)
    info = e2e.run("instance", "--name", "instance-libvirt", "info", "-o", "json").stdout
    assert '"Disk"' in info and '"InitVia"' in info
    err = e2e.fails("group", "commit", str(spec(e2e, hv, "bad.json", 2, Memory="lots")))
    assert err.startswith("Error: libvirt Properties.Memory: got 'lots', expected MiB"), err
    assert hv.domains(all=True) == []

    e2e.run("group", "commit", str(spec(e2e, hv, "v1.json", 2, Memory=128)))
    wait_for(lambda: len(hv.domains()) == 2, timeout=30, what="2 domains")

    hv.stop_daemon()  # the guests keep running; libvirt's API is gone
    err = e2e.fails("instance", "--name", "instance-libvirt", "describe")
    assert "cannot reach libvirt at qemu+unix:///session" in err and "start libvirtd" in err
    out = wait_for(
        lambda: (
            (o := e2e.run("group", "describe", "vms").stdout) and "cannot reach libvirt" in o and o
        ),
        timeout=20,
        what="group describe to say libvirt cannot be reached",
    )
    assert "actual unknown" in out, out
    assert len(hv.qemu_pids()) == 2  # nothing was created or destroyed meanwhile

    hv.start_daemon()
    most = 0

    def two_running() -> bool:
        nonlocal most
        now = hv.domains()
        most = max(most, len(now))
        return len(now) == 2

    # Back: the group is 2 again (libvirtd may kill a guest when it reconnects: then it is healed).
    wait_for(two_running, timeout=60, what="2 domains once libvirtd is back")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        two_running()
        time.sleep(0.2)
    assert most == 2 and len(hv.domains()) == 2
