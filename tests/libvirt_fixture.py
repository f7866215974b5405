"""A real hypervisor for the libvirt plugin's tests: a private ``libvirtd`` and a tiny guest.

Nothing is downloaded and nothing outside one temporary directory is touched:

* **The daemon** is Debian's ``libvirtd`` in *session* mode, run as the unprivileged user
  ``nobody`` (``setpriv``) with ``HOME`` and the ``XDG_*`` directories in the temp dir. A
  privileged daemon would need ``/etc/libvirt/qemu.conf``, a ``libvirt-qemu`` user and the fixed
  ``/run/libvirt`` (one per host, reach.md §A); a session daemon keeps its config, sockets, state
  and logs under the temp dir, so every test process can have its own. It is our child, stopped
  by PID (SIGTERM, SIGKILL after 10 s) and reaped. The plugin connects as root to
  ``qemu+unix:///session?socket=<dir>/run/libvirt/libvirt-sock``.
* **A storage pool** ``infrakit`` (a directory) holding a 16 MiB qcow2 base image, on which the
  plugin creates each instance's overlay.
* **The guest** is the distribution kernel (``/boot/vmlinuz-*``) and a busybox initramfs built
  here (busybox-static, the kernel's own modules for fw_cfg and the NoCloud cdrom). Its ``/init``
  prints :data:`BOOTED`, fetches the instance's Init (kernel command line ``infrakit.init=``
  base64, else fw_cfg ``opt/infrakit/init``, else the NoCloud cdrom's ``user-data``), runs it,
  prints :data:`INIT_DONE` and stays up. Built once per test process.

When a tool is missing and scripts/system-deps cannot install it, :func:`libvirt_session` skips
with the reason; a daemon that is installed but does not start is a failure
(tests/shared_component.py).
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.shared_component import SharedComponent

REPO = Path(__file__).resolve().parents[1]
BOOTED = "INFRAKIT-GUEST-BOOTED"
INIT_DONE = "INFRAKIT-GUEST-INIT-DONE"
POOL = "infrakit"
DAEMON_USER = "nobody"

#: Kernel modules the guest loads (in order) for fw_cfg, the NoCloud cdrom and a virtio NIC.
GUEST_MODULES = (
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
    "drivers/firmware/qemu_fw_cfg.ko",
    "drivers/cdrom/cdrom.ko",
    "fs/isofs/isofs.ko",
    "drivers/scsi/scsi_common.ko",
    "drivers/scsi/scsi_mod.ko",
    "drivers/scsi/sr_mod.ko",
    "drivers/ata/libata.ko",
    "drivers/ata/ata_piix.ko",
)

GUEST_INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo {BOOTED}
# A virtio NIC (Forward: QEMU user networking) gets the address QEMU's user network expects.
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover \
    net_failover virtio_net; do insmod /lib/mods/$m.ko 2>/dev/null; done
for i in $(seq 30); do
  [ -e /sys/class/net/eth0 ] && break
  grep -qs 0x0001 /sys/bus/virtio/devices/*/device || break
  sleep 0.1
done
if [ -e /sys/class/net/eth0 ]; then
  ip link set lo up; ip addr add 10.0.2.15/24 dev eth0; ip link set eth0 up
  ip route add default via 10.0.2.2
fi
for arg in $(cat /proc/cmdline); do
  case "$arg" in infrakit.init=*) echo "${{arg#infrakit.init=}}" | base64 -d > /tmp/init.sh;; esac
done
if [ ! -s /tmp/init.sh ]; then
  insmod /lib/mods/qemu_fw_cfg.ko 2>/dev/null
  f=/sys/firmware/qemu_fw_cfg/by_name/opt/infrakit/init/raw
  [ -e $f ] && cat $f > /tmp/init.sh
fi
if [ ! -s /tmp/init.sh ]; then
  for m in cdrom isofs scsi_common scsi_mod sr_mod libata ata_piix; do insmod /lib/mods/$m.ko; done
  for i in $(seq 50); do [ -b /dev/sr0 ] && break; sleep 0.1; done
  mkdir -p /mnt/cd && mount -t iso9660 -o ro /dev/sr0 /mnt/cd && cp /mnt/cd/user-data /tmp/init.sh
fi
if [ -s /tmp/init.sh ]; then sh /tmp/init.sh; echo "{INIT_DONE} rc=$?"; else echo "{INIT_DONE} none"; fi
while true; do sleep 3600; done
"""

CONSOLE_DIR = "consoles"


class LibvirtUnavailable(Exception):
    """libvirt cannot be used on this machine; the message says why, exactly."""


def _run(argv: list[str], timeout: float = 120, **kwargs: Any) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LibvirtUnavailable(f"`{' '.join(argv)}` failed: {exc}") from None
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise LibvirtUnavailable(
            f"`{' '.join(argv)}` exited {done.returncode}: {' | '.join(detail)}"
        )
    return done.stdout


def kernel() -> Path | None:
    """The newest distribution kernel in /boot with its modules, if any."""
    for candidate in sorted(glob.glob("/boot/vmlinuz-*"), reverse=True):
        version = candidate.removeprefix("/boot/vmlinuz-")
        if Path("/lib/modules", version).is_dir():
            return Path(candidate)
    return None


def _missing_tools() -> list[str]:
    tools = ("libvirtd", "virsh", "qemu-system-x86_64", "qemu-img", "genisoimage", "setpriv")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not os.access("/bin/busybox", os.X_OK):
        missing.append("busybox (busybox-static)")
    if kernel() is None:
        missing.append("a kernel in /boot (linux-image-amd64)")
    try:
        import libvirt  # noqa: F401
    except ImportError:
        missing.append(
            "libvirt-python (scripts/test installs it: pip install -e '.[dev,libvirt]' after scripts/system-deps)"
        )
    return missing


def ensure_tools() -> None:
    """The daemon, QEMU, busybox, a kernel and libvirt-python (scripts/system-deps installs them)."""
    if not _missing_tools():
        return
    with contextlib.suppress(LibvirtUnavailable):
        _run(["bash", str(REPO / "scripts" / "system-deps")], timeout=900)
    still = _missing_tools()
    if still:
        raise LibvirtUnavailable(f"{', '.join(still)} missing and scripts/system-deps did not help")


def build_initramfs(directory: Path) -> Path:
    """The busybox initramfs (gzip'd newc cpio) with :data:`GUEST_INIT` as ``/init``."""
    vmlinuz = kernel()
    assert vmlinuz is not None
    modules = Path("/lib/modules", vmlinuz.name.removeprefix("vmlinuz-"), "kernel")
    root = directory / "initramfs-root"
    for sub in ("bin", "proc", "sys", "dev", "tmp", "mnt", "lib/mods"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for module in GUEST_MODULES:
        source = modules / module
        if source.exists():
            shutil.copy2(source, root / "lib" / "mods" / source.name)
        elif source.with_suffix(".ko.xz").exists():
            _run(["sh", "-c", f"xz -dc {source}.xz > {root / 'lib' / 'mods' / source.name}"])
    (root / "init").write_text(GUEST_INIT)
    (root / "init").chmod(0o755)
    listing = _run(["sh", "-c", "find . | sort"], cwd=root)
    cpio = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet"],
        input=listing.encode(),
        cwd=root,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    target = directory / "guest.cpio.gz"
    target.write_bytes(gzip.compress(cpio, compresslevel=1))
    shutil.rmtree(root)
    return target


class Hypervisor:
    """One private session libvirtd with its pool and guest files, all under :attr:`directory`."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or Path(tempfile.mkdtemp(prefix="iklv", dir="/tmp"))
        self.directory.chmod(0o755)
        self.home = self.directory / "home"
        self.runtime = self.directory / "run"
        self.socket = self.runtime / "libvirt" / "libvirt-sock"
        self.uri = f"qemu+unix:///session?socket={self.socket}"
        self.pool_dir = self.directory / "pool"
        self.run_dir = self.directory / "files"  # the plugin's -o libvirt.run-dir
        self.log = self.directory / "libvirtd.log"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.kernel = kernel()
        self.initrd = self.directory / "guest.cpio.gz"
        self.base = self.pool_dir / "base.qcow2"

    # --- set-up ---------------------------------------------------------------------------------

    def start(self) -> Hypervisor:
        ensure_tools()
        user = pwd.getpwnam(DAEMON_USER)
        for sub in (self.home, self.runtime, self.pool_dir, self.run_dir, self.home / "config"):
            sub.mkdir(parents=True, exist_ok=True)
            os.chown(sub, user.pw_uid, user.pw_gid)
        self.runtime.chmod(0o700)
        config = self.home / "config" / "libvirt"
        config.mkdir(exist_ok=True)
        (config / "qemu.conf").write_text('stdio_handler = "file"\n')
        (config / "libvirtd.conf").write_text(f'log_outputs = "3:file:{self.log}"\n')
        for path in (config, config / "qemu.conf", config / "libvirtd.conf"):
            os.chown(path, user.pw_uid, user.pw_gid)
        self.log.touch()
        os.chown(self.log, user.pw_uid, user.pw_gid)
        build_initramfs(self.directory)
        self.start_daemon()
        self._define_pool()
        return self

    def _env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TZ")}
        return {
            **keep,
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_CACHE_HOME": str(self.home / "cache"),
            "XDG_DATA_HOME": str(self.home / "data"),
        }

    def start_daemon(self, timeout: float = 30.0) -> None:
        """``libvirtd`` (session mode, as ``nobody``) as our child; returns once it answers."""
        argv = ["setpriv", f"--reuid={DAEMON_USER}", "--regid=nogroup", "--clear-groups"]
        argv += ["libvirtd", "-f", str(self.home / "config" / "libvirt" / "libvirtd.conf")]
        with (self.directory / "libvirtd.out").open("ab") as out:
            self.daemon = subprocess.Popen(
                argv,
                env=self._env(),
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise LibvirtUnavailable(
                    f"libvirtd exited {self.daemon.returncode}: "
                    f"{self.log.read_text(errors='replace')[-400:]}"
                )
            if self.answers():
                return
            time.sleep(0.1)  # noqa: TID251 - polls a real process, bounded by the deadline
        self.stop_daemon()
        raise LibvirtUnavailable(f"libvirtd did not answer on {self.socket} in {timeout}s")

    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            self.virsh("version", timeout=10)
        except LibvirtUnavailable:
            return False
        return True

    def stop_daemon(self) -> None:
        """SIGTERM the daemon (SIGKILL after 10 s) and reap it. Guests keep running."""
        proc, self.daemon = self.daemon, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def _define_pool(self) -> None:
        with contextlib.suppress(LibvirtUnavailable):
            self.virsh("pool-destroy", POOL)
            self.virsh("pool-undefine", POOL)
        self.virsh("pool-define-as", POOL, "dir", "--target", str(self.pool_dir))
        self.virsh("pool-start", POOL)
        self.virsh("vol-create-as", POOL, self.base.name, "16M", "--format", "qcow2")

    # --- helpers for tests ----------------------------------------------------------------------

    def virsh(self, *args: str, timeout: float = 60) -> str:
        return _run(["virsh", "-q", "-c", self.uri, *args], timeout=timeout)

    def domains(self, *, all: bool = False) -> list[str]:
        """Names of the running domains (or every defined one with ``all``)."""
        out = self.virsh("list", "--name", *(["--all"] if all else []))
        return [line.strip() for line in out.splitlines() if line.strip()]

    def volumes(self) -> list[str]:
        """Files in the pool other than the base image."""
        return sorted(p.name for p in self.pool_dir.iterdir() if p != self.base)

    def console(self, name: str) -> str:
        path = self.run_dir / f"{name}.console"
        return path.read_text(errors="replace") if path.exists() else ""

    def qemu_pids(self) -> list[int]:
        run = self.runtime / "libvirt" / "qemu" / "run"
        pids = []
        for pidfile in run.glob("*.pid") if run.exists() else []:
            with contextlib.suppress(ValueError, OSError):
                pids.append(int(pidfile.read_text().strip()))
        return pids

    def destroy_all(self) -> None:
        """Every domain destroyed and undefined, the pool back to the base image only."""
        for name in self.domains(all=True):
            with contextlib.suppress(LibvirtUnavailable):
                self.virsh("destroy", name)
            with contextlib.suppress(LibvirtUnavailable):
                self.virsh("undefine", name)
        for path in self.pool_dir.iterdir():
            if path != self.base:
                path.unlink(missing_ok=True)
        with contextlib.suppress(LibvirtUnavailable):
            self.virsh("pool-refresh", POOL)
        for path in self.run_dir.iterdir():
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Every guest gone, the daemon stopped, the directory deleted."""
        try:
            if self.daemon is not None and self.daemon.poll() is None:
                self.destroy_all()
        finally:
            self.stop_daemon()
            for pid in self.qemu_pids():  # guests outlive the daemon; never leave one behind
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(self.directory, ignore_errors=True)

    def plugin_options(self) -> list[str]:
        """``-o`` options pointing ``infrakit plugin start libvirt`` at this hypervisor (TCG)."""
        return [
            "-o",
            f"libvirt.uri={self.uri}",
            "-o",
            f"libvirt.run-dir={self.run_dir}",
            "-o",
            "libvirt.domain-type=qemu",
        ]

    def properties(self, **changes: Any) -> dict[str, Any]:
        """Instance Properties that boot the test guest on this hypervisor."""
        props: dict[str, Any] = {
            "CPUs": 1,
            "Memory": 128,
            "Disk": {"Base": str(self.base), "Pool": POOL},
            "Kernel": str(self.kernel),
            "Initrd": str(self.initrd),
            "Cmdline": "console=ttyS0 quiet panic=-1",
        }
        props.update(changes)
        return props


_hypervisor = SharedComponent(
    "libvirt", "the private libvirtd does not run", ensure_tools, Hypervisor, LibvirtUnavailable
)


def libvirt_session() -> Iterator[Hypervisor]:
    """Body of a session fixture: one private hypervisor per test process, shared by modules."""
    yield from _hypervisor.session()
