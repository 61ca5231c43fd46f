"""Chunk disks for lab nodes: sparse files attached to loop devices, so the roles see
real block devices (mkfs.xfs, blkid and mount work on them inside a container)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from installer.errors import OnehciError

SIZE = 4 << 30  # sparse: costs only what is written
BY_ID = "/dev/disk/by-id/"


def by_id_path(disk: str | dict) -> str:
    """The name a node sees for a planned disk. A disk given by serial gets the name
    a virtio disk with that serial has on a real VM (as under Vagrant/qemu)."""
    return disk if isinstance(disk, str) else f"{BY_ID}virtio-{disk['serial']}"


def _losetup(*args: str) -> str:
    proc = subprocess.run(["losetup", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip()
        raise OnehciError(f"losetup {' '.join(args)} failed: {msg or f'exit {proc.returncode}'}")
    return proc.stdout


def attached(image: Path) -> list[str]:
    """Loop devices backed by this file."""
    return _losetup("--associated", str(image), "--noheadings", "--output", "NAME").split()


def attach(image: Path, size: int = SIZE) -> str:
    """The loop device of `image`, creating the sparse file and attaching it when needed."""
    image.parent.mkdir(parents=True, exist_ok=True)
    if not image.exists():
        with open(image, "wb") as fh:
            fh.truncate(size)
    devices = attached(image)
    if devices:
        return devices[0]
    return _losetup("--find", "--show", str(image)).strip()


def release(image: Path) -> list[str]:
    """Detach every loop device of `image` and delete the file; returns the devices."""
    if not image.exists():
        return []
    devices = attached(image)
    for device in devices:
        _losetup("--detach", device)
    image.unlink()
    return devices
