"""The guest `onehci smoke` boots on the cloud: a bootable disk image (about 12 MB) of Debian's
kernel and a busybox initramfs whose /init (smoke/init) reads OpenNebula's context CD, sets the
VM's address and reports on the serial console. Made from .deb packages only (apt-get download:
no package is installed on this machine), with xorriso; an isohybrid image, so the BIOS boots it
as a plain disk. Cached by what goes in: the packages' versions, the init script and RECIPE."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from installer.errors import OnehciError
from installer.i18n import _
from installer.resources import data_dir

CACHE = Path(os.environ.get("ONEHCI_SMOKE_IMAGE_CACHE", "/var/cache/onehci/smoke-image"))
RECIPE = 1  # raise when the way the image is made changes
NAME = "onehci-smoke.img"
KERNEL_PACKAGE = "linux-image-amd64"  # a metapackage: the real kernel package is its dependency
PACKAGES = ("busybox-static", "isolinux", "syslinux-common")
# what the guest needs of the kernel's modules: the NIC and disk buses OpenNebula may give it and
# the context CD's filesystem; their dependencies come along (read from each module's modinfo)
MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi", "e1000", "ata_piix", "ahci", "sr_mod",
           "sd_mod", "isofs")
ISOLINUX_CFG = """DEFAULT smoke
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL smoke
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND console=ttyS0,115200 quiet panic=10
"""


def _run(argv: list[str], what: str, **kwargs) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    except FileNotFoundError:
        raise OnehciError(_("{what}: {command} is missing (scripts/setup.sh installs it)").format(
            what=what, command=argv[0])) from None
    if proc.returncode != 0:
        raise OnehciError(_("{what} failed: {error}").format(what=what,
                                                             error=(proc.stderr.strip() or proc.stdout.strip())[-500:]))
    return proc.stdout


def _candidate(package: str) -> tuple[str, str]:
    """(package, version) apt would download; for the kernel metapackage, the kernel it names."""
    shown = _run(["apt-cache", "show", "--no-all-versions", package],
                 _("reading {package} from apt").format(package=package))
    version = re.search(r"^Version: (\S+)$", shown, re.M)
    if not version:
        raise OnehciError(_("apt knows no {package}: run `apt-get update`").format(package=package))
    if package == KERNEL_PACKAGE:
        kernel = re.search(r"^Depends: (linux-image-[^\s,]+)", shown, re.M)
        if not kernel:
            raise OnehciError(_("{package} names no kernel package").format(package=package))
        return _candidate(kernel.group(1))
    return package, version.group(1)


def key(packages: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256(f"{RECIPE}\n{packages}\n".encode())
    digest.update((data_dir("smoke") / "init").read_bytes())
    return digest.hexdigest()[:16]


def ensure(cache: Path = CACHE, say: Callable[[str], None] = print) -> Path:
    """The image, built when the cache has none for the current packages and init script."""
    packages = [_candidate(KERNEL_PACKAGE), *(_candidate(p) for p in PACKAGES)]
    image = cache / key(packages) / NAME
    if image.is_file():
        return image
    say(_("building the smoke test's guest image ({packages})").format(
        packages=", ".join(f"{p} {v}" for p, v in packages)))
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="onehci-smoke-", dir=cache) as work:
        built = _build(Path(work), packages)
        image.parent.mkdir(exist_ok=True)
        os.replace(built, image)  # whole or not at all
    return image


def _build(work: Path, packages: list[tuple[str, str]]) -> Path:
    debs, tree, root, iso = work / "debs", work / "tree", work / "root", work / "iso"
    for folder in (debs, tree, iso / "isolinux"):
        folder.mkdir(parents=True)
    os.chmod(debs, 0o755)  # apt's download user must write there
    _run(["apt-get", "download", *(f"{p}={v}" for p, v in packages)], _("downloading the guest's packages"), cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(tree)], _("unpacking {package}").format(package=deb.name))
    kernels = sorted((tree / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise OnehciError(_("expected one kernel in {package}, found {count}").format(package=packages[0][0],
                                                                                      count=len(kernels)))
    release = kernels[0].name.removeprefix("vmlinuz-")
    _initramfs(tree, release, root)
    archive = work / "initrd.gz"
    with open(archive, "wb") as out:
        files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
        cpio = subprocess.run([str(tree / "bin/busybox"), "cpio", "-o", "-H", "newc"], cwd=root, input=files,
                              capture_output=True, check=True).stdout
        out.write(subprocess.run(["gzip", "-9n"], input=cpio, capture_output=True, check=True).stdout)
    shutil.copy(kernels[0], iso / "vmlinuz")
    shutil.copy(archive, iso / "initrd.gz")
    shutil.copy(tree / "usr/lib/ISOLINUX/isolinux.bin", iso / "isolinux")
    shutil.copy(tree / "usr/lib/syslinux/modules/bios/ldlinux.c32", iso / "isolinux")
    (iso / "isolinux/isolinux.cfg").write_text(ISOLINUX_CFG)
    image = work / NAME
    _run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(image), "-isohybrid-mbr",
          str(tree / "usr/lib/ISOLINUX/isohdpfx.bin"), "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
          "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", "-V", "ONEHCI_SMOKE", str(iso)],
         _("making the guest image (xorriso)"))
    return image


def _initramfs(tree: Path, release: str, root: Path) -> None:
    """busybox, the kernel modules the guest needs in load order, and smoke/init as /init."""
    for folder in ("bin", "proc", "sys", "dev", "context", "lib/modules"):
        (root / folder).mkdir(parents=True)
    shutil.copy(tree / "bin/busybox", root / "bin/busybox")
    shutil.copy(data_dir("smoke") / "init", root / "init")
    os.chmod(root / "init", 0o755)
    found = {p.name.removesuffix(".ko"): p for p in (tree / "lib/modules" / release / "kernel").rglob("*.ko")}
    order: list[str] = []

    def add(name: str) -> None:
        name = name if name in found else name.replace("-", "_")
        if name in order:
            return
        if name not in found:
            raise OnehciError(_("kernel {release} has no module {name}").format(release=release, name=name))
        info = re.search(rb"\0depends=([^\0]*)\0", b"\0" + found[name].read_bytes())
        for dependency in (info.group(1).decode().split(",") if info else []):
            if dependency:
                add(dependency)
        order.append(name)

    for module in MODULES:
        add(module)
    for name in order:
        shutil.copy(found[name], root / "lib/modules" / f"{name}.ko")
    (root / "lib/modules/order").write_text("\n".join(order) + "\n")
