"""The lab's base root filesystem: Debian 12 from debootstrap, built once and shared
read-only by every node (each node mounts it as the lower layer of an overlay).

The cache is keyed by suite, package list and recipe version, so changing any of them
builds a new image next to the old one instead of modifying one in use.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from installer import node_packages, state
from installer.errors import OnehciError

CACHE = Path("/var/cache/onehci/lab")
SUITE = "bookworm"
# What an installed node has after the preseed, plus what the lab itself relies on
# (systemd as PID 1 for --boot, fuse3/xfsprogs/nftables for the roles). One image for every
# node: a lab node without the kvm role carries the KVM host's packages too, unused.
PACKAGES = (*node_packages.BASE, *node_packages.KVM_HOST,
            "systemd", "systemd-sysv", "dbus", "iproute2", "sudo", "xfsprogs", "fuse3", "nftables", "procps", "less",
            "libpam-systemd")  # polkitd (libvirt) needs a logind, which debootstrap does not pick by itself
RECIPE = 1  # bump when _prepare() changes what goes into the image


def key(suite: str = SUITE, packages: tuple[str, ...] = PACKAGES) -> str:
    blob = json.dumps({"suite": suite, "packages": sorted(packages), "recipe": RECIPE})
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def path(suite: str = SUITE, packages: tuple[str, ...] = PACKAGES) -> Path:
    return CACHE / f"base-{suite}-{key(suite, packages)}"


def ensure(mirror: str, say: Callable[[str], None] = lambda _m: None,
           suite: str = SUITE, packages: tuple[str, ...] = PACKAGES) -> Path:
    """Return the base rootfs, building it first when it is not in the cache."""
    target = path(suite, packages)
    if (target / "etc/os-release").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with state.locked(CACHE, "base-lock"):  # two `lab up` at once build it once
        if (target / "etc/os-release").exists():
            return target
        return _build(target, mirror, say, suite, packages)


def _build(target: Path, mirror: str, say: Callable[[str], None], suite: str, packages: tuple[str, ...]) -> Path:
    if shutil.which("debootstrap") is None:
        raise OnehciError("debootstrap is missing: install it with `apt-get install debootstrap`")
    work = target.with_name(target.name + ".partial")
    if work.exists():  # an interrupted build: start over
        shutil.rmtree(work)
    log = target.with_name(target.name + ".log")
    say(f"building the lab base image {target.name} from {mirror} (once; takes a few minutes)")
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(work), mirror],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        raise OnehciError(f"debootstrap failed ({lines[-1] if lines else f'exit {proc.returncode}'}); "
                          f"full log: {log}")
    _prepare(work)
    work.rename(target)  # only a complete image ever has the cache's name
    say(f"base image ready in {time.monotonic() - started:.0f} s: {target}")
    return target


def _prepare(root: Path) -> None:
    """Remove what must differ per node; each node gets its own at `lab up`."""
    for host_key in (root / "etc/ssh").glob("ssh_host_*"):
        host_key.unlink()
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
