"""The libvirt plugin's pure decisions: Properties errors, Init delivery, domain XML, metadata."""

from __future__ import annotations

import base64
from typing import Any
from xml.etree import ElementTree

import pytest

from infrakit.errors import SpecError
from infrakit.plugins.libvirt.domain import (
    CMDLINE_INIT_LIMIT,
    FWCFG_INIT_NAME,
    InstanceFiles,
    domain_name,
    domain_xml,
    init_via,
    metadata_xml,
    parse_metadata,
    parse_properties,
)

KERNEL = {"Kernel": "/boot/vmlinuz", "Initrd": "/tmp/i.cpio.gz"}
DISK = {"Disk": {"Base": "/pool/base.qcow2"}}


def test_defaults_and_case_insensitive_keys() -> None:
    props = parse_properties({"cpus": 2, "MEMORY": "1GiB", "disk": {"base": "/b.qcow2"}})
    assert (props.cpus, props.memory, props.network) == (2, 1024, "none")
    assert props.disk is not None and (props.disk.base, props.disk.pool) == ("/b.qcow2", "default")
    assert parse_properties({**DISK, "Memory": "512MiB"}).memory == 512
    assert parse_properties({**DISK, "Network": "network:default"}).network == "network:default"


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        (
            {**DISK, "CPUs": 0},
            "libvirt Properties.CPUs: got 0, expected a whole number of virtual CPUs",
        ),
        ({**DISK, "CPUs": "2"}, "libvirt Properties.CPUs: got '2', expected a whole number"),
        ({**DISK, "Memory": "lots"}, "libvirt Properties.Memory: got 'lots', expected MiB"),
        ({**DISK, "Memory": 8}, "libvirt Properties.Memory: got 8, expected MiB"),
        ({**DISK, "Network": "wifi"}, "libvirt Properties.Network: got 'wifi', expected \"none\""),
        (
            {**DISK, "Colour": "red"},
            "libvirt Properties.Colour: unknown field; expected some of CPUs",
        ),
        ({"Disk": {}}, "libvirt Properties.Disk.Base: got {}, expected the path of a base image"),
        (
            {"Disk": {"Base": "/b", "Size": 3}},
            "libvirt Properties.Disk.Size: unknown field; expected some of Base, Pool",
        ),
        ({**DISK, "InitVia": "usb"}, "libvirt Properties.InitVia: got 'usb', expected \"cmdline\""),
        ({}, "libvirt Properties: nothing to boot; give Disk.Base"),
        ({"Initrd": "/i", **DISK}, "libvirt Properties.Initrd: given without Kernel"),
        ({**DISK, "InitVia": "cmdline"}, 'libvirt Properties.InitVia: "cmdline" needs Kernel'),
        (["x"], "libvirt instance Properties: expected an object"),
    ],
)
def test_bad_properties_are_one_clear_line(properties: Any, expected: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_properties(properties)
    message = str(err.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_how_init_reaches_the_guest() -> None:
    with_kernel = parse_properties(KERNEL)
    from_disk = parse_properties(DISK)
    assert init_via(with_kernel, "") is None
    assert init_via(with_kernel, "echo hi") == "cmdline"
    assert init_via(from_disk, "echo hi") == "nocloud"
    assert init_via(parse_properties({**KERNEL, "InitVia": "fwcfg"}), "echo hi") == "fwcfg"
    with pytest.raises(
        SpecError, match=r'too long for the kernel command line.*"fwcfg" or "nocloud"'
    ):
        init_via(with_kernel, "x" * CMDLINE_INIT_LIMIT)


def _parsed(xml: str) -> ElementTree.Element:
    return ElementTree.fromstring(xml)


def test_domain_xml_with_kernel_overlay_cmdline_init_and_user_network() -> None:
    props = parse_properties(
        {**KERNEL, **DISK, "CPUs": 2, "Memory": 192, "Network": "user", "Cmdline": "console=ttyS0"}
    )
    files = InstanceFiles(overlay="/pool/w-1.qcow2", console="/run/w-1.console")
    root = _parsed(
        domain_xml("w-1", "qemu", props, metadata_xml("p", {"a": "b"}, None), files, "echo hi")
    )
    assert root.get("type") == "qemu" and root.findtext("name") == "w-1"
    assert root.findtext("vcpu") == "2" and root.findtext("memory") == "192"
    cmdline = root.findtext("os/cmdline") or ""
    assert cmdline.startswith("console=ttyS0 infrakit.init=")
    assert base64.b64decode(cmdline.split("infrakit.init=")[1]) == b"echo hi"
    disk = root.find("devices/disk[@device='disk']")
    assert disk is not None and disk.find("source").get("file") == "/pool/w-1.qcow2"  # type: ignore[union-attr]
    assert root.find("devices/interface").get("type") == "user"  # type: ignore[union-attr]
    assert root.find("devices/serial/source").get("path") == "/run/w-1.console"  # type: ignore[union-attr]


def test_domain_xml_fwcfg_and_nocloud_and_bridge() -> None:
    props = parse_properties({**KERNEL, "InitVia": "fwcfg", "Network": "bridge:br0"})
    root = _parsed(
        domain_xml("w", "kvm", props, "<x/>", InstanceFiles(init_file="/run/w.init"), "echo")
    )
    entry = root.find("sysinfo/entry")
    assert (
        entry is not None
        and entry.get("name") == FWCFG_INIT_NAME
        and entry.get("file") == "/run/w.init"
    )
    assert "infrakit.init" not in (root.findtext("os/cmdline") or "")
    assert root.find("devices/interface/source").get("bridge") == "br0"  # type: ignore[union-attr]
    boot_disk = parse_properties(DISK)
    root = _parsed(
        domain_xml(
            "w", "qemu", boot_disk, "<x/>", InstanceFiles(seed_iso="/run/w.iso"), "#cloud-config\n"
        )
    )
    assert root.find("os/boot").get("dev") == "hd"  # type: ignore[union-attr]
    cdrom = root.find("devices/disk[@device='cdrom']")
    assert cdrom is not None and cdrom.find("source").get("file") == "/run/w.iso"  # type: ignore[union-attr]
    assert root.find("devices/interface") is None


def test_metadata_round_trip_with_and_without_namespace() -> None:
    xml = metadata_xml("instance-libvirt", {"infrakit.group": "w", "q": "<&'\">"}, "db-1")
    member = parse_metadata(xml)
    assert (
        member is not None and member.plugin == "instance-libvirt" and member.logical_id == "db-1"
    )
    assert member.tags == {"infrakit.group": "w", "q": "<&'\">", "infrakit.logical_id": "db-1"}
    bare = '<instance><plugin>p</plugin><tag key="k">v</tag></instance>'  # how libvirt returns it
    assert parse_metadata(bare).tags == {"k": "v"}  # type: ignore[union-attr]
    assert parse_metadata("<instance><tag key='k'>v</tag></instance>") is None  # not ours
    assert parse_metadata("not xml") is None


def test_domain_names_are_readable_unique_and_valid() -> None:
    a, b = (
        domain_name(None, {"infrakit.group": "web tier/1"}),
        domain_name(None, {"infrakit.group": "web tier/1"}),
    )
    assert a != b and a.startswith("web-tier-1-") and len(a) == len("web-tier-1-") + 8
    assert domain_name("db-1", {}).startswith("db-1-")
    assert domain_name(None, {}).startswith("instance-")


def test_forward_publishes_a_guest_port_through_user_networking_only() -> None:
    props = parse_properties({**KERNEL, "Network": "user", "forward": 8080})
    assert props.forward == 8080
    xml = domain_xml("w-2", "qemu", props, metadata_xml("p", {}, None), InstanceFiles(), "", 40123)
    root = _parsed(xml)
    assert root.find("devices/interface") is None  # the NIC is QEMU's own, with the forward
    qemu = "{http://libvirt.org/schemas/domain/qemu/1.0}"
    args = [a.get("value") for a in root.iter(f"{qemu}arg")]
    assert "user,id=ikfwd,hostfwd=tcp:127.0.0.1:40123-:8080" in args
    assert any(a and a.startswith("virtio-net-pci,netdev=ikfwd") for a in args)
    for bad, expected in (
        ({**KERNEL, "Forward": 8080}, 'Forward: needs "Network": "user"'),
        ({**KERNEL, "Network": "bridge:br0", "Forward": 80}, "got 'bridge:br0'"),
        ({**KERNEL, "Network": "user", "Forward": 70000}, "Forward"),
        ({**KERNEL, "Network": "user", "Forward": "80"}, "Forward"),
    ):
        with pytest.raises(SpecError, match=expected):
            parse_properties(bad)
