"""The ``libvirt`` kind: its options and its build (libvirt-python and the plugin are imported by
``build`` only)."""

from __future__ import annotations

from infrakit.errors import SpecError
from infrakit.spi.option import Option, choice, path
from infrakit.spi.plugin import Context, Kind, Served, vendor_info

__all__ = ["DOMAIN_TYPE_OPTION", "KIND", "RUN_DIR_OPTION", "URI_OPTION", "build"]

URI_OPTION = Option(
    "uri",
    "the libvirt connection URI, e.g. qemu:///system or qemu+unix:///session?socket=PATH",
    default="qemu:///system",
    env="LIBVIRT_DEFAULT_URI",
)
RUN_DIR_OPTION = Option(
    "run-dir",
    "directory for each instance's console log, Init file and NoCloud seed; the hypervisor "
    "reads and writes it (default: INFRAKIT_HOME/libvirt)",
    env="INFRAKIT_LIBVIRT_RUN_DIR",
    parse=path,
)
DOMAIN_TYPE_OPTION = Option(
    "domain-type",
    "auto (probe KVM with a real boot, fall back to TCG), kvm, or qemu (TCG)",
    default="auto",
    parse=choice("auto", "kvm", "qemu"),
)


def build(ctx: Context) -> Served:
    """Serve a :class:`~infrakit.plugins.libvirt.plugin.LibvirtInstancePlugin` for ``uri``."""
    try:
        import libvirt  # noqa: F401 - fail at start, not at the first call
    except ImportError:
        raise SpecError(
            "plugin kind libvirt needs libvirt-python; install libvirt-dev (scripts/system-deps) "
            "and then: pip install 'pyinfrakit[libvirt]'"
        ) from None
    from infrakit.plugins.libvirt.plugin import LibvirtInstancePlugin

    run_dir = ctx.option(KIND, "run-dir") or ctx.home / "libvirt"
    if run_dir.exists() and not run_dir.is_dir():
        raise SpecError(
            f"libvirt run directory {run_dir} is a file, expected a directory; pass another "
            f"-o libvirt.run-dir"
        )
    plugin = LibvirtInstancePlugin(
        ctx.option(KIND, "uri"),
        run_dir=run_dir,
        name=ctx.name,
        domain_type=ctx.option(KIND, "domain-type"),
    )
    return Served(
        instance={"": plugin},
        events=plugin,
        start=plugin.start,
        stop=plugin.stop,
        vendor=vendor_info("infrakit-instance-libvirt"),
    )


KIND = Kind(
    name="libvirt",
    default_name="instance-libvirt",
    summary="instances as libvirt/QEMU virtual machines (KVM when it boots, else TCG)",
    build=build,
    options=(URI_OPTION, RUN_DIR_OPTION, DOMAIN_TYPE_OPTION),
)
