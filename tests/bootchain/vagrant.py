"""The project's Vagrantfile driven on this machine: libvirt (started when it is not running: CI machines
run no systemd), `vagrant` with its state in a work directory, and the site's gateway as an address that
leads nowhere. Used by tests/bootchain/test_vagrant_up.py and bench/vagrant_deploy.py."""

from __future__ import annotations

import grp
import os
import shutil
import stat
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

from installer.lab import net
from tests.lab.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
URI = "qemu:///system"


def virsh(*args: str, check: bool = True) -> str:
    r = subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 or not check, f"virsh {' '.join(args)}: {r.stderr.strip()}"
    return r.stdout


@contextmanager
def gateway_that_leads_nowhere(bridge: str, gateway: str, netns: str, veth: str):
    """The site's gateway as an address in a network namespace of its own with no route out: the installer's
    network check finds its gateway at once (an absent one costs it a minute of waiting) and nothing it
    sends can leave this machine. Its end of the pair joins the bridge once the Vagrantfile made it:
    call what this yields then."""
    try:
        yield lambda: net.create_veth(veth, bridge, netns, cidr=f"{gateway}/24")
    finally:
        net.delete_veth(veth)
        net.delete_netns(netns)


@contextmanager
def _kvm_device_as_udev_sets_it():
    """These machines run no udev, so /dev/kvm keeps the kernel's root-only mode. libvirt then finds KVM when
    it probes qemu but not for its qemu user afterwards, takes its capabilities cache for stale and
    probes qemu again on every call: 30 s per domain definition, over 2 minutes per `vagrant up`. Debian's
    udev rule gives the device group kvm and mode 0660; the same here while it runs, restored after.
    The domains stay in software emulation (domain type qemu): only libvirt's bookkeeping changes."""
    kvm = Path("/dev/kvm")
    before = kvm.stat() if kvm.exists() else None
    if before is None or (before.st_mode & 0o060) == 0o060:
        yield
        return
    os.chown(kvm, 0, grp.getgrnam("kvm").gr_gid)
    os.chmod(kvm, 0o660)
    try:
        yield
    finally:
        os.chown(kvm, before.st_uid, before.st_gid)
        os.chmod(kvm, stat.S_IMODE(before.st_mode))


def _libvirt_answers() -> bool:
    return subprocess.run(["virsh", "-c", URI, "version"], capture_output=True, timeout=30).returncode == 0


@contextmanager
def libvirtd_running():
    """libvirt answering on qemu:///system for the time of the block; daemons started here are stopped after."""
    assert os.geteuid() == 0, "Vagrant with libvirt needs root here"
    for tool in ("vagrant", "virsh", "qemu-img", "qemu-system-x86_64"):
        assert shutil.which(tool), f"{tool} is missing: run scripts/setup.sh"
    for daemon in ("/usr/sbin/libvirtd", "/usr/sbin/virtlogd"):
        assert Path(daemon).exists(), f"{daemon} is missing: run scripts/setup.sh (libvirt-daemon-system)"
    with _kvm_device_as_udev_sets_it():
        started = []
        if not _libvirt_answers():
            with open(Path(tempfile.gettempdir()) / "onehci-test-libvirtd.log", "a") as log:
                for daemon in ("/usr/sbin/virtlogd", "/usr/sbin/libvirtd"):
                    started.append(subprocess.Popen([daemon], stdin=subprocess.DEVNULL, stdout=log,
                                                    stderr=subprocess.STDOUT, start_new_session=True))
            wait_for("libvirtd answering on " + URI, _libvirt_answers, 60, 0.5)
        try:
            yield
        finally:
            if started:  # our libvirtd autostarted Debian's `default` network: take it down with it
                virsh("net-destroy", "default", check=False)
                for proc in reversed(started):
                    proc.terminate()
                    proc.wait(30)


def vagrant(workdir: Path, site: Path, *args: str, background: bool = False, serve_wait: int = 300,
            memory_mb: int = 1024, cpus: int = 1, os_disk: str = "4G", chunk_disk: str = "1G", timeout: float = 600):
    """`vagrant ARGS` in the project's directory for SITE, its state under WORKDIR, the nodes in software
    emulation; BACKGROUND: the running process (its output on a pipe)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONEHCI_", "VAGRANT_"))}
    env.update(VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_HOME=str(workdir / "vagrant.d"), NO_COLOR="1",
               VAGRANT_DOTFILE_PATH=str(workdir / "dot"), LIBVIRT_DEFAULT_URI=URI, ONEHCI_SITE=str(site),
               ONEHCI_LIBVIRT_DRIVER="qemu", ONEHCI_VM_MEMORY=str(memory_mb), ONEHCI_VM_CPUS=str(cpus),
               ONEHCI_OS_DISK_SIZE=os_disk, ONEHCI_CHUNK_DISK_SIZE=chunk_disk, ONEHCI_SERVE_WAIT=str(serve_wait))
    command = ["vagrant", *args]
    if background:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
