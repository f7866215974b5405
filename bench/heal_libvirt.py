"""Boot and heal times of a libvirt group: real TCG virtual machines on a private libvirtd.

The stack is what a user runs: ``infrakit plugin start group libvirt vanilla`` (one process)
against the private session libvirtd of tests/libvirt_fixture.py (a busybox initramfs guest on the
distribution kernel, a qcow2 overlay per VM, the flavor's Init on the kernel command line). The
group (Size 1) has its resync timer at 60 s, so heals are driven by libvirt's lifecycle events,
and its crash-loop window at 0 s (the bench kills young VMs on purpose).

Figures (the bench polls libvirt every 20 ms through its own connection, and the VM's serial
console file for the guest's markers):

* ``boot_running`` - ``group commit`` -> the domain is running (overlay, define, QEMU started);
* ``boot_ready``   - ``group commit`` -> the guest printed that it ran the flavor's Init
                     (instance ready: kernel, initramfs, Init);
* ``destroy``      - ``virDomainDestroy`` of the VM (what ``virsh destroy`` calls), until it
                     returns: libvirt stops QEMU (SIGTERM, then SIGKILL) and waits for it;
* ``heal_running`` - the VM stopped (``destroy`` returned) -> its replacement domain is running
                     (lifecycle event, reconcile pass, overlay, define, QEMU started);
* ``heal_ready``   - the VM stopped -> the replacement ran the Init.

Run::

    .venv/bin/python -m bench.heal_libvirt [--trials 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.libvirt_fixture import INIT_DONE, Hypervisor, LibvirtUnavailable

from infrakit.testing import short_tempdir
from infrakit.testing.processes import Daemon, isolated_env, run_cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "libvirt.json"
READY = re.compile(f"{INIT_DONE} rc=0\n")


def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"{what} not reached in {timeout}s")


def running(conn: Any) -> list[str]:
    import libvirt

    return [d.name() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]


def measure(trials: int) -> dict[str, list[float]]:
    import libvirt

    hv = Hypervisor()
    home = short_tempdir("ikbl")
    env = isolated_env(home)
    samples: dict[str, list[float]] = {
        "boot_running": [],
        "boot_ready": [],
        "destroy": [],
        "heal_running": [],
        "heal_ready": [],
    }
    stack: Daemon | None = None
    try:
        hv.start()
        conn = libvirt.open(hv.uri)
        argv = ["infrakit", "plugin", "start", "group", "libvirt", "vanilla"]
        argv += ["-o", "group.poll-interval=60s", *hv.plugin_options()]
        stack = Daemon(argv, env, sockets=["group", "instance-libvirt", "flavor-vanilla"]).start()
        doc = json.loads(EXAMPLE.read_text())
        doc["Properties"]["Allocation"]["Size"] = 1
        doc["Properties"]["Provisioning"] = {"CrashLoopWindow": "0s"}
        doc["Properties"]["Instance"]["Properties"] = hv.properties()
        doc["Properties"]["Flavor"]["Properties"]["Init"] = ["echo ready"]
        spec = home / "libvirt.json"
        spec.write_text(json.dumps(doc))
        t0 = time.monotonic()
        done = run_cli(["group", "commit", str(spec)], env)
        assert done.returncode == 0, done.stderr
        (vm,) = until(lambda: running(conn), 60, "the first VM running")
        samples["boot_running"].append(time.monotonic() - t0)
        until(lambda: READY.search(hv.console(vm)), 120, "the first VM ready")
        samples["boot_ready"].append(time.monotonic() - t0)
        print(
            f"  boot: running {samples['boot_running'][-1]:.2f} s, ready {samples['boot_ready'][-1]:.2f} s"
        )
        for trial in range(trials):
            t0 = time.monotonic()
            conn.lookupByName(vm).destroy()
            samples["destroy"].append(time.monotonic() - t0)
            t0 = time.monotonic()
            (new,) = until(
                lambda old=vm: [n for n in running(conn) if n != old], 30, "a replacement"
            )
            samples["heal_running"].append(time.monotonic() - t0)
            until(lambda n=new: READY.search(hv.console(n)), 120, "the replacement ready")
            samples["heal_ready"].append(time.monotonic() - t0)
            print(
                f"  trial {trial + 1}: destroy {samples['destroy'][-1]:.2f} s, then heal running "
                f"{samples['heal_running'][-1]:.2f} s, "
                f"ready {samples['heal_ready'][-1]:.2f} s",
                flush=True,
            )
            vm = new
        run_cli(["group", "destroy", "vms"], env)
        until(lambda: not running(conn), 30, "the group destroyed")
        conn.close()
    finally:
        if stack is not None:
            stack.stop()
        hv.close()
        shutil.rmtree(home, ignore_errors=True)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    try:
        samples = measure(args.trials)
    except LibvirtUnavailable as exc:
        print(f"blocked: libvirt cannot run VMs here: {exc}", file=sys.stderr)
        return 2
    summary = {
        name: {
            "median_s": round(statistics.median(values), 2),
            "min_s": round(min(values), 2),
            "max_s": round(max(values), 2),
        }
        for name, values in samples.items()
    }
    print(
        json.dumps(
            {
                "bench": "heal_libvirt",
                "trials": args.trials,
                "load_before": round(load, 2),
                **summary,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
