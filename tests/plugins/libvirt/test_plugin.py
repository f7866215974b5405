"""The libvirt instance plugin against a real private libvirtd and real TCG guests.

The hypervisor (tests/libvirt_fixture.py) is a session-mode libvirtd run as ``nobody`` in a temp
dir, with a pool holding a qcow2 base image and a busybox initramfs guest built from the
distribution kernel; it is shared by the tests of this process and stopped by PID at the end.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator

import pytest

from infrakit import errors
from infrakit.plugins.libvirt import LibvirtInstancePlugin
from infrakit.spi.event import Event
from infrakit.spi.instance import Context, Spec
from infrakit.testing.fakes import wait_until
from tests.libvirt_fixture import BOOTED, INIT_DONE, Hypervisor, libvirt_session

TAGS = {"infrakit.group": "vms", "infrakit.config.hash": "h1"}


@pytest.fixture(scope="session")
def hypervisor() -> Iterator[Hypervisor]:
    yield from libvirt_session()


@pytest.fixture
def hv(hypervisor: Hypervisor) -> Iterator[Hypervisor]:
    if hypervisor.daemon is None or hypervisor.daemon.poll() is not None:
        hypervisor.start_daemon()
    yield hypervisor
    hypervisor.destroy_all()


def new_plugin(hv: Hypervisor, **kwargs: object) -> LibvirtInstancePlugin:
    return LibvirtInstancePlugin(
        hv.uri,
        run_dir=hv.run_dir,
        domain_type="qemu",
        sweep_interval=1.0,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
async def plugin(hv: Hypervisor) -> AsyncIterator[LibvirtInstancePlugin]:
    p = new_plugin(hv)
    await p.start()
    yield p
    await p.stop()


async def provision(p: LibvirtInstancePlugin, init: str = "", **props: object) -> str:
    hv_props = props.pop("hv")
    assert isinstance(hv_props, dict)
    return await asyncio.to_thread(
        p.provision, Spec(properties={**hv_props, **props}, tags=dict(TAGS), init=init)
    )


@pytest.mark.timeout(120)
async def test_init_reaches_the_guest_by_cmdline_fwcfg_and_nocloud(
    hv: Hypervisor, plugin: LibvirtInstancePlugin
) -> None:
    props = hv.properties()
    names = {}
    for via in ("cmdline", "fwcfg", "nocloud"):
        names[via] = await provision(plugin, f"echo init-by-{via}", hv=props, InitVia=via)
    assert sorted(hv.domains()) == sorted(names.values())
    assert len(hv.volumes()) == 3 and all(v.endswith(".qcow2") for v in hv.volumes())

    def done() -> bool:
        return all(re.search(f"{INIT_DONE} .*\n", hv.console(n)) for n in names.values())

    await wait_until(done, timeout=90)
    for via, name in names.items():
        console = hv.console(name)
        assert BOOTED in console and f"init-by-{via}" in console, console[-500:]
        assert f"{INIT_DONE} rc=0" in console

    # A second plugin (a restarted one) sees the same instances, with their tags, from metadata.
    again = new_plugin(hv)
    listed = await asyncio.to_thread(again.describe_instances, {"infrakit.group": "vms"}, True)
    assert sorted(d.id for d in listed) == sorted(names.values())
    assert all(d.tags == TAGS for d in listed)
    assert {d.properties["MemoryMiB"] for d in listed} == {128}  # type: ignore[index]
    assert await asyncio.to_thread(again.describe_instances, {"infrakit.group": "other"}) == []

    # Destroy leaves no domain, no overlay, no file.
    for name in names.values():
        await asyncio.to_thread(again.destroy, name, Context("terminate"))
    assert hv.domains(all=True) == [] and hv.volumes() == []
    assert list(hv.run_dir.iterdir()) == []
    with pytest.raises(errors.NotFoundError, match="not found among the domains"):
        await asyncio.to_thread(again.destroy, names["cmdline"])


@pytest.mark.timeout(60)
async def test_an_out_of_band_destroy_is_an_event_and_the_domain_is_reaped(
    hv: Hypervisor, plugin: LibvirtInstancePlugin
) -> None:
    events = plugin.subscribe("instance/")
    name = await provision(plugin, hv=hv.properties())
    await wait_until(plugin.events_connected.is_set, timeout=10)
    got: list[Event] = []

    async def next_died() -> None:
        async for event in events:
            got.append(event)
            if event.type == "died" and event.id == name:
                return

    hv.virsh("destroy", name)
    await asyncio.wait_for(next_died(), timeout=10)  # an event, not a sweep (every second here)
    assert await asyncio.to_thread(plugin.describe_instances, {}) == []
    # The stopped domain of ours is reaped: undefined, overlay deleted.
    await wait_until(lambda: hv.domains(all=True) == [] and hv.volumes() == [], timeout=10)


@pytest.mark.timeout(90)
async def test_libvirtd_away_means_errors_never_no_instances(
    hv: Hypervisor, plugin: LibvirtInstancePlugin
) -> None:
    name = await provision(plugin, hv=hv.properties())
    assert [d.id for d in await asyncio.to_thread(plugin.describe_instances, {})] == [name]
    await wait_until(plugin.events_connected.is_set, timeout=10)
    events = plugin.subscribe("instance/")
    hv.stop_daemon()
    with pytest.raises(errors.PluginError, match=r"cannot reach libvirt at qemu\+unix://") as err:
        await asyncio.to_thread(plugin.describe_instances, {})
    assert "start libvirtd" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(errors.PluginError, match="cannot reach libvirt"):
        await asyncio.to_thread(plugin.provision, Spec(properties=hv.properties(), tags=TAGS))
    await wait_until(lambda: not plugin.events_connected.is_set(), timeout=15)

    hv.start_daemon()

    async def resync() -> None:
        async for event in events:
            if event.type == "resync":
                return

    await asyncio.wait_for(resync(), timeout=20)
    listed = await asyncio.to_thread(plugin.describe_instances, {})
    # The guest normally survives a daemon restart; reach.md saw libvirtd kill it once.
    assert [d.id for d in listed] in ([name], [])


async def test_validate_checks_the_pool_the_base_image_and_files(
    hv: Hypervisor, plugin: LibvirtInstancePlugin
) -> None:
    await asyncio.to_thread(plugin.validate, hv.properties())
    cases = [
        ({"Disk": {"Base": str(hv.base), "Pool": "absent"}}, "no storage pool 'absent'"),
        ({"Disk": {"Base": "/tmp/nowhere.qcow2", "Pool": "infrakit"}}, "is not a volume of any"),
        (
            {"Kernel": "/nonexistent/vmlinuz"},
            "Properties.Kernel: /nonexistent/vmlinuz is not a file",
        ),
    ]
    for changes, expected in cases:
        with pytest.raises(errors.SpecError, match=expected):
            await asyncio.to_thread(plugin.validate, hv.properties(**changes))
    with pytest.raises(errors.SpecError, match="too long for the kernel command line"):
        await asyncio.to_thread(
            plugin.provision, Spec(properties=hv.properties(), tags=TAGS, init="x" * 4000)
        )
    # A domain libvirt refuses to start (no such network) leaves no domain, overlay or file.
    with pytest.raises(errors.PluginError, match="refused to define and start") as err:
        await asyncio.to_thread(
            plugin.provision,
            Spec(properties=hv.properties(Network="network:absent"), tags=TAGS, init="echo"),
        )
    assert "absent" in str(err.value)
    assert hv.domains(all=True) == [] and hv.volumes() == []
    assert list(hv.run_dir.iterdir()) == []


@pytest.mark.timeout(90)
async def test_the_kvm_probe_is_a_real_boot(hv: Hypervisor, plugin: LibvirtInstancePlugin) -> None:
    assert hv.kernel is not None
    # TCG boots the kernel to its "no root" panic, which ends the probe domain by itself.
    assert await asyncio.to_thread(plugin.boots, str(hv.kernel), "qemu", 60.0)
    # KVM does not boot here (no /dev/kvm for the session daemon, or QEMU hangs in early boot).
    assert not await asyncio.to_thread(plugin.boots, str(hv.kernel), "kvm", 10.0)
    auto = new_plugin(hv)
    auto._probed = None  # as with -o libvirt.domain-type=auto
    from infrakit.plugins.libvirt.domain import parse_properties

    assert await asyncio.to_thread(auto._domain_type, parse_properties(hv.properties())) == "qemu"
    assert hv.domains(all=True) == [] and list(hv.run_dir.iterdir()) == []


@pytest.mark.timeout(120)
async def test_a_forwarded_guest_port_is_the_instances_address(
    hv: Hypervisor, plugin: LibvirtInstancePlugin
) -> None:
    """Forward publishes a guest TCP port on 127.0.0.1 and reports it as infrakit.address:
    a real HTTP server in the guest answers there (what the load balancer routes to)."""
    import urllib.request

    from infrakit.spi.types import ADDRESS_TAG

    serve = (
        "mkdir -p /www && echo hello-from-the-guest > /www/index.html && httpd -p 8080 -h /www"
        " && ip -o addr show eth0"
    )
    name = await provision(plugin, serve, hv=hv.properties(), Network="user", Forward=8080)
    [listed] = await asyncio.to_thread(plugin.describe_instances, {"infrakit.group": "vms"})
    assert listed.id == name
    address = listed.tags[ADDRESS_TAG]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", address)
    # A restarted plugin reads the same address back from the domain's metadata.
    again = await asyncio.to_thread(new_plugin(hv).describe_instances, {})
    assert [d.tags[ADDRESS_TAG] for d in again] == [address]

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://{address}/", timeout=2) as reply:
                return bool(reply.read() == b"hello-from-the-guest\n")
        except OSError:
            return False

    await wait_until(lambda: INIT_DONE in hv.console(name), timeout=90)
    assert f"{INIT_DONE} rc=0" in hv.console(name), hv.console(name)[-800:]
    try:
        await wait_until(answers, timeout=20)
    except TimeoutError:
        raise AssertionError(f"nothing answers at {address}: {hv.console(name)[-1500:]}") from None
    with pytest.raises(errors.SpecError, match='Forward: needs "Network": "user"'):
        await provision(plugin, hv=hv.properties(), Forward=8080)
