"""The libvirt plugin's pure half: Properties, the domain XML it defines, the tags it reads back.

Nothing here talks to libvirt or touches a file, so every decision (a Properties error, how the
flavor's Init reaches the guest, what the domain and overlay XML say, which metadata is ours) is
table-tested without a hypervisor. :mod:`infrakit.plugins.libvirt.plugin` does the I/O.

Tags live in the domain's ``<metadata>`` element, in the namespace :data:`METADATA_NS`::

    <ik:instance xmlns:ik="https://infrakit.dev/libvirt/instance/1">
      <ik:plugin>instance-libvirt</ik:plugin>
      <ik:logical-id>db-1</ik:logical-id>
      <ik:tag key="infrakit.group">workers</ik:tag> ...
    </ik:instance>

libvirt keeps it with the domain, so a restarted plugin (or another one on the same hypervisor)
lists the same instances with the same tags.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from infrakit.errors import SpecError
from infrakit.spi.types import JSON, LOGICAL_ID_TAG, Tags

__all__ = [
    "CMDLINE_INIT_LIMIT",
    "FWCFG_INIT_NAME",
    "METADATA_NS",
    "PROPERTIES_EXAMPLE",
    "PROPERTIES_SCHEMA",
    "DomainProperties",
    "InstanceFiles",
    "Membership",
    "domain_name",
    "domain_xml",
    "init_via",
    "metadata_xml",
    "nocloud_meta_data",
    "overlay_xml",
    "parse_metadata",
    "parse_properties",
    "probe_xml",
]

#: The namespace of the ``<metadata>`` element that carries an instance's tags.
METADATA_NS = "https://infrakit.dev/libvirt/instance/1"
METADATA_PREFIX = "ik"
#: fw_cfg entry name of the Init file (``/sys/firmware/qemu_fw_cfg/by_name/<name>/raw`` in the guest).
FWCFG_INIT_NAME = "opt/infrakit/init"
#: Longest base64 Init put on the kernel command line (x86's line is 2048 bytes in all).
CMDLINE_INIT_LIMIT = 1536

_NETWORK = re.compile(r"none|user|(network|bridge):[A-Za-z0-9_.:-]+")
_MEMORY = re.compile(r"(\d+)\s*(MiB|M|GiB|G)?", re.IGNORECASE)
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


def _mebibytes(value: Any) -> Any:
    """``512``, ``"512MiB"``, ``"1GiB"`` -> MiB (an int); anything else is left to pydantic."""
    if isinstance(value, str) and (m := _MEMORY.fullmatch(value.strip())):
        factor = 1024 if (m.group(2) or "m").lower().startswith("g") else 1
        return int(m.group(1)) * factor
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DiskProperties(_Model):
    """``Disk``: a qcow2 overlay on ``Base`` (a volume of ``Pool``), made per instance."""

    base: str = Field(alias="base", min_length=1)
    pool: str = Field("default", alias="pool", min_length=1)


class DomainProperties(_Model):
    """An instance's ``Properties``, checked (names case-insensitive on the wire)."""

    cpus: int = Field(1, alias="cpus", ge=1, le=64)
    memory: Annotated[int, BeforeValidator(_mebibytes)] = Field(256, alias="memory", ge=16)
    disk: DiskProperties | None = Field(None, alias="disk")
    network: str = Field("none", alias="network", pattern=f"^(?:{_NETWORK.pattern})$")
    kernel: str | None = Field(None, alias="kernel", min_length=1)
    initrd: str | None = Field(None, alias="initrd", min_length=1)
    cmdline: str = Field("", alias="cmdline")
    init_via: Literal["cmdline", "fwcfg", "nocloud"] | None = Field(None, alias="initvia")
    #: A guest TCP port published on a free 127.0.0.1 port (the instance's address).
    forward: int | None = Field(None, alias="forward", ge=1, le=65535)


#: Wire spelling of each field, for error lines.
_WIRE = {
    "cpus": "CPUs",
    "memory": "Memory",
    "disk": "Disk",
    "base": "Base",
    "pool": "Pool",
    "network": "Network",
    "kernel": "Kernel",
    "initrd": "Initrd",
    "cmdline": "Cmdline",
    "initvia": "InitVia",
    "forward": "Forward",
}

_EXPECTED = {
    "CPUs": "a whole number of virtual CPUs from 1 to 64",
    "Memory": 'MiB as a whole number from 16 (256) or a size ("512MiB", "1GiB")',
    "Disk": 'an object {"Base": "<path of a base image volume>", "Pool": "default"}',
    "Base": "the path of a base image that is a volume of a libvirt storage pool",
    "Pool": "the name of a libvirt storage pool",
    "Network": '"none", "user" (QEMU user networking), "network:<libvirt network>" or "bridge:<host bridge>"',
    "Kernel": "the path of a kernel on the hypervisor's host (direct kernel boot)",
    "Initrd": "the path of an initramfs on the hypervisor's host",
    "Cmdline": "the kernel command line, a string",
    "InitVia": '"cmdline", "fwcfg" or "nocloud"',
    "Forward": "the guest's TCP port (1-65535) to publish on a free port of 127.0.0.1",
}

PROPERTIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A libvirt domain (QEMU). Keys are case-insensitive; all are optional.",
    "additionalProperties": False,
    "properties": {
        "CPUs": {"type": "integer", "minimum": 1, "maximum": 64, "description": "vCPUs (1)"},
        "Memory": {
            "type": ["integer", "string"],
            "description": 'MiB (256), or a size such as "512MiB" or "1GiB"',
        },
        "Disk": {
            "type": "object",
            "required": ["Base"],
            "properties": {"Base": {"type": "string"}, "Pool": {"type": "string"}},
            "description": "a qcow2 overlay per instance on Base, a volume of Pool (default)",
        },
        "Network": {"type": "string", "description": _EXPECTED["Network"] + ' (default "none")'},
        "Kernel": {"type": "string", "description": "direct kernel boot: the kernel's path"},
        "Initrd": {"type": "string", "description": "direct kernel boot: the initramfs' path"},
        "Cmdline": {"type": "string", "description": "direct kernel boot: the command line"},
        "InitVia": {
            "type": "string",
            "enum": ["cmdline", "fwcfg", "nocloud"],
            "description": "how the flavor's Init reaches the guest (default: cmdline with a "
            "Kernel, else nocloud)",
        },
        "Forward": {
            "type": "integer",
            "minimum": 1,
            "maximum": 65535,
            "description": "a guest TCP port published on a free 127.0.0.1 port, reported as "
            'the instance\'s address (infrakit.address); needs "Network": "user"',
        },
    },
}
PROPERTIES_EXAMPLE: dict[str, Any] = {
    "CPUs": 1,
    "Memory": 256,
    "Disk": {
        "Base": "/var/lib/libvirt/images/debian-12-genericcloud-amd64.qcow2",
        "Pool": "default",
    },
    "Network": "network:default",
}


def _fold(value: Any) -> Any:
    """Keys lower-cased (Go decodes JSON case-insensitively), one level into ``Disk``."""
    if not isinstance(value, dict):
        return value
    out = {str(k).lower(): v for k, v in value.items()}
    if isinstance(out.get("disk"), dict):
        out["disk"] = {str(k).lower(): v for k, v in out["disk"].items()}
    return out


def _refusal(exc: ValidationError) -> SpecError:
    err = exc.errors(include_url=False)[0]
    path = ".".join(_WIRE.get(str(p), str(p)) for p in err["loc"])
    field = _WIRE.get(str(err["loc"][-1]), "") if err["loc"] else ""
    if err["type"] == "extra_forbidden":
        return SpecError(
            f"libvirt Properties.{path}: unknown field; expected some of "
            f"{', '.join(PROPERTIES_SCHEMA['properties'])} (see: infrakit instance info)"
        )
    expected = _EXPECTED.get(field, err["msg"])
    return SpecError(
        f"libvirt Properties.{path}: got {err.get('input')!r}, expected {expected} "
        f"(see: infrakit instance info)"
    )


def _check_known(given: dict[str, Any], prefix: str, known: dict[str, Any]) -> None:
    """An unknown key is named as the user spelled it, with the keys that exist."""
    lowered = {k.lower() for k in known}
    unknown = sorted(str(k) for k in given if str(k).lower() not in lowered)
    if unknown:
        raise SpecError(
            f"libvirt Properties.{prefix}{unknown[0]}: unknown field; expected some of "
            f"{', '.join(known)} (see: infrakit instance info)"
        )


def parse_properties(properties: JSON) -> DomainProperties:
    """Check an instance's ``Properties``; a :class:`SpecError` names the field and what fits."""
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        raise SpecError(
            'libvirt instance Properties: expected an object such as {"CPUs": 1, "Memory": 256, '
            '"Disk": {"Base": "/var/lib/libvirt/images/base.qcow2"}} (see: infrakit instance info)'
        )
    _check_known(properties, "", PROPERTIES_SCHEMA["properties"])
    disk = next((v for k, v in properties.items() if str(k).lower() == "disk"), None)
    if isinstance(disk, dict):
        _check_known(disk, "Disk.", PROPERTIES_SCHEMA["properties"]["Disk"]["properties"])
    try:
        props = DomainProperties.model_validate(_fold(properties))
    except ValidationError as exc:
        raise _refusal(exc) from None
    if props.initrd is not None and props.kernel is None:
        raise SpecError(
            "libvirt Properties.Initrd: given without Kernel; an initramfs needs direct kernel "
            "boot, so add Kernel (or drop Initrd to boot from Disk)"
        )
    if props.kernel is None and props.disk is None:
        raise SpecError(
            "libvirt Properties: nothing to boot; give Disk.Base (a bootable image) or Kernel "
            "(direct kernel boot)"
        )
    if props.forward is not None and props.network != "user":
        raise SpecError(
            f'libvirt Properties.Forward: needs "Network": "user" (QEMU user networking '
            f"forwards a host port to the guest), got {props.network!r}; set Network to "
            '"user", or reach the guest through its libvirt network or bridge instead'
        )
    if props.init_via == "cmdline" and props.kernel is None:
        raise SpecError(
            'libvirt Properties.InitVia: "cmdline" needs Kernel (direct kernel boot); use '
            '"nocloud" (cloud-init images) or "fwcfg"'
        )
    return props


def init_via(props: DomainProperties, init: str) -> str | None:
    """How ``init`` reaches the guest: ``cmdline``, ``fwcfg``, ``nocloud`` or None (no Init)."""
    if not init.strip():
        return None
    via = props.init_via or ("cmdline" if props.kernel else "nocloud")
    if via == "cmdline" and len(_cmdline_init(init)) > CMDLINE_INIT_LIMIT:
        raise SpecError(
            f"libvirt: the flavor's Init is {len(init.encode())} bytes, too long for the kernel "
            f"command line (at most {CMDLINE_INIT_LIMIT * 3 // 4} bytes); set Properties.InitVia "
            f'to "fwcfg" or "nocloud"'
        )
    return via


def _cmdline_init(init: str) -> str:
    return base64.b64encode(init.encode()).decode("ascii")


@dataclass(frozen=True, slots=True)
class InstanceFiles:
    """Where one instance's files are: the overlay (a pool volume), and in the plugin's run
    directory the serial console log and the Init file (fw_cfg) or NoCloud seed ISO."""

    overlay: str | None = None
    console: str | None = None
    init_file: str | None = None
    seed_iso: str | None = None


def domain_name(spec_logical_id: str | None, tags: Tags) -> str:
    """``<logical id or group>-<8 hex>``: readable in ``virsh list``, unique, a valid name."""
    base = spec_logical_id or tags.get("infrakit.group") or "instance"
    base = _NAME_UNSAFE.sub("-", base).strip("-._")[:40] or "instance"
    return f"{base}-{secrets.token_hex(4)}"


def metadata_xml(plugin: str, tags: Tags, logical_id: str | None) -> str:
    """The ``<ik:instance>`` element (see the module docstring)."""
    parts = [f"<{METADATA_PREFIX}:plugin>{escape(plugin)}</{METADATA_PREFIX}:plugin>"]
    if logical_id:
        parts.append(
            f"<{METADATA_PREFIX}:logical-id>{escape(logical_id)}</{METADATA_PREFIX}:logical-id>"
        )
    for key, value in sorted(tags.items()):
        if key == LOGICAL_ID_TAG:
            continue
        parts.append(
            f"<{METADATA_PREFIX}:tag key={quoteattr(key)}>{escape(value)}</{METADATA_PREFIX}:tag>"
        )
    return (
        f"<{METADATA_PREFIX}:instance xmlns:{METADATA_PREFIX}={quoteattr(METADATA_NS)}>"
        + "".join(parts)
        + f"</{METADATA_PREFIX}:instance>"
    )


@dataclass(frozen=True, slots=True)
class Membership:
    """What a domain's metadata says: the plugin that made it, its logical ID and tags."""

    plugin: str
    logical_id: str | None
    tags: Tags


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_metadata(text: str) -> Membership | None:
    """Read back :func:`metadata_xml` (libvirt returns it with or without the namespace)."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return None
    if _local(root.tag) != "instance":
        return None
    plugin, logical_id, tags = "", None, {}
    for child in root:
        name = _local(child.tag)
        if name == "plugin":
            plugin = child.text or ""
        elif name == "logical-id":
            logical_id = child.text or None
        elif name == "tag" and child.get("key"):
            tags[str(child.get("key"))] = child.text or ""
    if not plugin:
        return None
    if logical_id:
        tags[LOGICAL_ID_TAG] = logical_id
    return Membership(plugin, logical_id, tags)


def overlay_xml(name: str, capacity: int, base_path: str, base_format: str) -> str:
    """A pool volume: a qcow2 overlay of ``capacity`` bytes backed by the base image."""
    return (
        f"<volume><name>{escape(name)}</name><capacity unit='bytes'>{capacity}</capacity>"
        f"<target><format type='qcow2'/></target>"
        f"<backingStore><path>{escape(base_path)}</path>"
        f"<format type={quoteattr(base_format)}/></backingStore></volume>"
    )


#: The qemu namespace of ``<qemu:commandline>``, for a forwarded user-mode NIC.
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"


def _forwarded(host_port: int, guest_port: int) -> str:
    """A user-mode virtio NIC whose ``127.0.0.1:host_port`` reaches the guest's ``guest_port``.

    libvirt's own ``<portForward>`` needs the passt backend; QEMU's ``hostfwd`` does not, so
    the NIC is passed to QEMU directly (the guest sees 10.0.2.15/24, gateway 10.0.2.2)."""
    netdev = f"user,id=ikfwd,hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}"
    # On a PCI slot libvirt does not hand out (it numbers its own devices from slot 2 up).
    args = ["-netdev", netdev, "-device", "virtio-net-pci,netdev=ikfwd,bus=pci.0,addr=0x1e"]
    return (
        "<qemu:commandline>"
        + "".join(f"<qemu:arg value={quoteattr(a)}/>" for a in args)
        + "</qemu:commandline>"
    )


def _interface(network: str) -> str:
    if network == "none":
        return ""
    if network == "user":
        return "<interface type='user'><model type='virtio'/></interface>"
    kind, _, source = network.partition(":")
    return (
        f"<interface type='{kind}'><source {kind}={quoteattr(source)}/>"
        f"<model type='virtio'/></interface>"
    )


def _os(props: DomainProperties, cmdline: str) -> str:
    parts = ["<type arch='x86_64' machine='pc'>hvm</type>"]
    if props.kernel:
        parts.append(f"<kernel>{escape(props.kernel)}</kernel>")
        if props.initrd:
            parts.append(f"<initrd>{escape(props.initrd)}</initrd>")
        if cmdline:
            parts.append(f"<cmdline>{escape(cmdline)}</cmdline>")
    else:
        parts.append("<boot dev='hd'/>")
    return "<os>" + "".join(parts) + "</os>"


def domain_xml(
    name: str,
    domain_type: str,
    props: DomainProperties,
    metadata: str,
    files: InstanceFiles,
    init: str = "",
    host_port: int | None = None,
) -> str:
    """The persistent domain to define for one instance (``host_port``: where ``Forward``
    is published)."""
    via = init_via(props, init)
    cmdline = props.cmdline.strip()
    if via == "cmdline":
        cmdline = f"{cmdline} infrakit.init={_cmdline_init(init)}".strip()
    sysinfo = ""
    if via == "fwcfg" and files.init_file:
        sysinfo = (
            f"<sysinfo type='fwcfg'><entry name='{FWCFG_INIT_NAME}' "
            f"file={quoteattr(files.init_file)}/></sysinfo>"
        )
    devices = []
    if files.console:
        source = f"<source path={quoteattr(files.console)}/>"
        devices.append(f"<serial type='file'>{source}<target port='0'/></serial>")
        devices.append(f"<console type='file'>{source}<target type='serial' port='0'/></console>")
    else:
        devices.append("<serial type='pty'><target port='0'/></serial>")
    if files.overlay:
        devices.append(
            f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file={quoteattr(files.overlay)}/><target dev='vda' bus='virtio'/></disk>"
        )
    if via == "nocloud" and files.seed_iso:
        devices.append(
            f"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
            f"<source file={quoteattr(files.seed_iso)}/><target dev='hdc' bus='ide'/>"
            f"<readonly/></disk>"
        )
    forwarded = ""
    if props.forward is not None and host_port is not None:
        forwarded = _forwarded(host_port, props.forward)
    else:
        devices.append(_interface(props.network))
    devices.append("<memballoon model='none'/>")
    namespace = f" xmlns:qemu={quoteattr(QEMU_NS)}" if forwarded else ""
    return (
        f"<domain type={quoteattr(domain_type)}{namespace}><name>{escape(name)}</name>"
        f"<metadata>{metadata}</metadata>"
        f"<memory unit='MiB'>{props.memory}</memory><vcpu>{props.cpus}</vcpu>"
        f"{sysinfo}{_os(props, cmdline)}<features><acpi/></features>"
        f"<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot>"
        f"<on_crash>destroy</on_crash><devices>{''.join(devices)}</devices>{forwarded}</domain>"
    )


def probe_xml(name: str, domain_type: str, kernel: str, console: str) -> str:
    """A transient domain that boots ``kernel`` with no root file system: a working accelerator
    gets it to its "unable to mount root" panic, and ``panic=-1`` plus ``on_reboot=destroy``
    then ends the domain by itself. A domain still running at the deadline did not boot."""
    source = f"<source path={quoteattr(console)}/>"
    return (
        f"<domain type={quoteattr(domain_type)}><name>{escape(name)}</name>"
        f"<memory unit='MiB'>128</memory><vcpu>1</vcpu>"
        f"<os><type arch='x86_64' machine='pc'>hvm</type><kernel>{escape(kernel)}</kernel>"
        f"<cmdline>console=ttyS0 quiet panic=-1 root=/dev/infrakit-probe</cmdline></os>"
        f"<features><acpi/></features><on_poweroff>destroy</on_poweroff>"
        f"<on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>"
        f"<devices><serial type='file'>{source}<target port='0'/></serial>"
        f"<memballoon model='none'/></devices></domain>"
    )


def nocloud_meta_data(name: str) -> str:
    """The NoCloud seed's ``meta-data``: the instance ID and host name are the domain's name."""
    return f"instance-id: {name}\nlocal-hostname: {name}\n"
