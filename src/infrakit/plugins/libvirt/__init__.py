"""The ``libvirt`` instance plugin: every instance is a virtual machine, a libvirt domain (QEMU).

See docs/plugins/libvirt.md for the whole contract. In short:

* **Provision** defines and starts a persistent domain from ``Properties`` (``CPUs``, ``Memory``,
  ``Disk`` - a qcow2 overlay per instance on a base image volume of a storage pool -, ``Network``,
  direct kernel boot ``Kernel``/``Initrd``/``Cmdline``). The flavor's ``Init`` reaches the guest on
  the kernel command line, through QEMU's fw_cfg, or as a NoCloud seed ISO (cloud-init).
* **Tags** are kept in the domain's ``<metadata>`` element, so a restarted plugin lists the same
  instances. The instance ID is the domain's name.
* **Destroy** destroys and undefines the domain and deletes its overlay and files.
* **Events**: libvirt's lifecycle events are published on ``instance/change`` (a ``virsh destroy``
  heals at once); a monitor reconnects to a restarted libvirtd, sweeps stopped domains, and an
  unreachable libvirtd makes every call an error, never "no instances".
* **KVM or TCG**: with ``-o libvirt.domain-type=auto`` a real kernel boot under KVM is tried once;
  guests run under TCG when it does not finish.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infrakit._utils.lazy import lazy_exports

if TYPE_CHECKING:
    from infrakit.plugins.libvirt.kind import KIND
    from infrakit.plugins.libvirt.plugin import LibvirtInstancePlugin

__all__ = ["KIND", "LibvirtInstancePlugin"]

__getattr__ = lazy_exports(__name__, {"KIND": ".kind", "LibvirtInstancePlugin": ".plugin"})
