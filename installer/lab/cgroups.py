"""A lab node's own cgroup in each cgroup v1 controller of this machine.

OpenNebula gives every VM CPU shares, so libvirt inside a node must create cgroups for its VMs.
systemd-nspawn, started without a systemd on the host, leaves a container in the host's root
cgroups and mounts the controllers read-only. Each node is therefore started inside a cgroup of
its own (onehci/NODE in every v1 controller), which its cgroup namespace shows as its root; that
cgroup is bound into the node (INSIDE/CONTROLLER), and a unit of the node binds it over the
read-only controller before libvirtd starts (installer/lab/rootfs.py). libvirt then makes
onehci/NODE/machine.slice/... and nodes never meet (two nodes may run a domain of the same name
during a live migration).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
INSIDE = "/var/lib/onehci-lab/cgroup"  # where a node finds its own cgroups (systemd-nspawn binds them there)
PARENT = "onehci"
CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")


def _v1_mounts() -> dict[str, Path]:
    """controller -> its mounted v1 hierarchy (a merged one like cpu,cpuacct counts for both)."""
    found = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] == "cgroup":
            for option in fields[3].split(","):
                if option in CONTROLLERS:
                    found.setdefault(option, Path(fields[1]))
    return found


def node_cgroups(hostname: str) -> list[Path]:
    """The node's cgroup in each distinct v1 hierarchy; made when missing ([] on a cgroup v2
    only machine, where the container's delegation is left to systemd-nspawn)."""
    paths = []
    for controller, mount in sorted(_v1_mounts().items()):
        path = mount / PARENT / hostname
        if path in paths:
            continue
        for directory in (mount / PARENT, path):
            if not directory.exists():
                directory.mkdir()
                if controller == "cpuset":  # a new cpuset has no CPU or memory node until given its parent's
                    for name in ("cpuset.cpus", "cpuset.mems"):
                        (directory / name).write_text((directory.parent / name).read_text())
        paths.append(path)
    return paths


def controller(path: Path) -> str:
    """The hierarchy's name under /sys/fs/cgroup (cpu, memory, ...) of a node cgroup."""
    return path.parent.parent.name


def binds(paths: list[Path]) -> list[str]:
    """systemd-nspawn options that put each node cgroup, writable, at INSIDE/CONTROLLER."""
    return [f"--bind={path}:{INSIDE}/{controller(path)}" for path in paths]


def joiner(paths: list[Path]) -> Callable[[], None]:
    """For Popen's preexec_fn: the child moves itself into PATHS before it execs."""
    def join() -> None:
        for path in paths:
            (path / "cgroup.procs").write_text("0")  # 0: the writing process itself
    return join


def remove(hostname: str) -> list[Path]:
    """Remove the node's cgroups and what libvirt made under them, deepest first (a cgroup
    still holding a process is left: the node is not stopped)."""
    removed = []
    for mount in set(_v1_mounts().values()):
        top = mount / PARENT / hostname
        if not top.exists():
            continue
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            _rmdir(directory)
        if _rmdir(top):
            removed.append(top)
        if not any(p.is_dir() for p in (mount / PARENT).iterdir()):
            _rmdir(mount / PARENT)  # the last node's: leave nothing of the lab behind
    return removed


def _rmdir(directory: Path) -> bool:
    try:
        directory.rmdir()  # a cgroup directory is removed empty-handed: its control files go with it
        return True
    except OSError:
        return False
