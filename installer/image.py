"""`onehci image build`: the system every node of a site gets, and the environment that installs it.

    CACHE/<key>/root.tar.zst        Debian 12 as the OS install leaves a node (the node packages, SSH,
                                    the kernel, GRUB for BIOS and the signed shim + GRUB for UEFI)
    CACHE/<key>/vmlinuz             Debian's signed kernel, from the image
    CACHE/<key>/installer.initrd    the installer environment: an initramfs made by initramfs-tools
                                    inside the image, with installenv/'s hook and install script
    CACHE/<key>/image.json          what it holds: packages and versions, sizes, checksum

Built from .deb packages only (debootstrap through apt-cacher-ng), never a .udeb; cached by what
goes in (suite, packages, the site's locale, the installer environment's files and RECIPE), built
beside and renamed into place, so an image in use is never changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from installer import node_packages, state
from installer.errors import OnehciError
from installer.i18n import _
from installer.resources import data_dir

CACHE = Path(os.environ.get("ONEHCI_IMAGE_CACHE", "/var/cache/onehci/image"))
SUITE = "bookworm"
RECIPE = 1  # raise when the way an image is made changes
# what every installed node has besides the node packages: a bootable system for BIOS and Secure
# Boot UEFI, networkd for the static address, the locale, and what the installer environment needs
SYSTEM_PACKAGES = ("linux-image-amd64", "grub-pc-bin", "grub-efi-amd64-bin", "grub-efi-amd64-signed",
                   "shim-signed", "grub2-common", "initramfs-tools", "busybox", "zstd", "dosfstools", "fdisk",
                   "e2fsprogs", "udev", "kmod", "systemd", "systemd-sysv", "dbus", "libpam-systemd", "iproute2",
                   "locales", "keyboard-configuration", "tzdata", "sudo", "procps", "less", "xfsprogs",
                   "fuse3", "nftables")
FILES = ("root.tar.zst", "vmlinuz", "installer.initrd", "image.json")


@dataclass(frozen=True)
class Image:
    directory: Path
    info: dict

    def file(self, name: str) -> Path:
        return self.directory / name


def file_sha256(path: Path) -> str:
    """The sha256 of a file read in 1 MiB blocks (images are hundreds of MiB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def packages_for(site) -> list[str]:
    """The image's package list: one image for every node of the site, so the union of theirs."""
    wanted = list(SYSTEM_PACKAGES)
    for node in site.nodes:
        wanted += node_packages.for_node(node)
    return sorted(set(wanted))


def system_key(site) -> str:
    """What the installed system depends on."""
    blob = json.dumps({"suite": SUITE, "packages": packages_for(site), "recipe": RECIPE, "locale": site.cluster.locale})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def key(site) -> str:
    """The system and the installer environment's files."""
    digest = hashlib.sha256(system_key(site).encode())
    for path in sorted(data_dir("installenv").rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(data_dir("installenv")).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def find(site) -> Image | None:
    """The site's image when it is built (ONEHCI_IMAGE names another image directory: tests)."""
    directory = Path(os.environ["ONEHCI_IMAGE"]) if os.environ.get("ONEHCI_IMAGE") else CACHE / key(site)
    if not all((directory / name).is_file() for name in FILES):
        return None
    return Image(directory, json.loads((directory / "image.json").read_text()))


def require(site, site_path) -> Image:
    image = find(site)
    if image is None:
        raise OnehciError(_("the site installs nodes from an image (bootstrap.install: image) and its image is not built: "
                            "run `onehci image build {site}` first (a few minutes, once per content)").format(
                                site=site_path))
    return image


def ensure(loaded, say: Callable[[str], None] = print) -> tuple[Image, bool]:
    """The site's image, built when the cache has none for its content. (image, built now?)"""
    site = loaded.site
    image = find(site)
    if image is not None:
        return image, False
    if os.geteuid() != 0:
        raise OnehciError(_("building the node image needs root (debootstrap and chroot)"))
    for tool in ("debootstrap", "zstd", "tar"):
        if shutil.which(tool) is None:
            raise OnehciError(_("{name} is missing: install it with `apt-get install {package}`").format(
                name=tool, package=tool))
    CACHE.mkdir(parents=True, exist_ok=True)
    with state.locked(CACHE, "build-lock"):  # two builds at once: one builds, the other waits and finds it
        image = find(site)
        if image is not None:
            return image, False
        started = time.monotonic()
        system = CACHE / f"system-{system_key(site)}"
        if not (system / "system.json").is_file():
            with _building(system) as work, _apt_proxy(site, work) as proxy:
                _build_system(site, work, proxy, say)
        target = CACHE / key(site)
        with _building(target) as work:
            _build_installer(system, work, CACHE / f"{target.name}.log", say)
            info = {**json.loads((system / "system.json").read_text()), "key": target.name,
                    "initrd_bytes": (work / "installer.initrd").stat().st_size,
                    "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "build_seconds": round(time.monotonic() - started)}
            (work / "image.json").write_text(json.dumps(info, indent=2) + "\n")
        say(_("node image ready in {seconds} s: {packed} MiB packed, {unpacked} MiB unpacked; installer environment "
              "{initrd} MiB").format(seconds=info["build_seconds"], packed=info["archive_bytes"] >> 20,
                                     unpacked=info["unpacked_bytes"] >> 20, initrd=info["initrd_bytes"] >> 20))
        return Image(target, info), True


@contextlib.contextmanager
def _building(target: Path) -> Iterator[Path]:
    """A scratch directory that becomes TARGET only when the block ends without error."""
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield work
        for leftover in ("root", "apt-cacher-ng-run"):
            shutil.rmtree(work / leftover, ignore_errors=True)
        os.chmod(work, 0o755)
        if target.exists():  # an incomplete directory of the same name (files missing): replaced
            shutil.rmtree(target)
        work.rename(target)
    finally:
        _unmount_under(work)  # an interrupted debootstrap may leave its /proc and /sys mounted there
        shutil.rmtree(work, ignore_errors=True)


def _unmount_under(directory: Path) -> None:
    inside = str(directory.resolve()) + "/"
    points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for point in sorted((p for p in points if p.startswith(inside)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


@contextlib.contextmanager
def _apt_proxy(site, work: Path) -> Iterator[str]:
    """apt-cacher-ng for the build: the one on the bootstrap address or on this machine when it
    answers, else one of our own on 127.0.0.1 for the time of the build. Whatever the nodes use
    (bootstrap.apt_proxy), the build goes through it: a rebuild downloads nothing twice."""
    from installer import aptcache

    for address in (str(site.bootstrap.address), "127.0.0.1"):
        if aptcache.listening(address):
            yield f"http://{address}:{aptcache.PORT}/"
            return
    proc = aptcache.start("127.0.0.1", site.bootstrap.mirror, work / "apt-cacher-ng-run")
    try:
        yield f"http://127.0.0.1:{aptcache.PORT}/"
    finally:
        proc.terminate()
        proc.wait(10)


def _run(argv: list[str], what: str, log: Path, env: dict | None = None, **kwargs) -> None:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, **(env or {})}, **kwargs)
    if proc.returncode != 0:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        raise OnehciError(f"{what} failed ({lines[-1][:300] if lines else f'exit {proc.returncode}'}); "
                          f"full log: {log}")


@contextlib.contextmanager
def _chroot_mounts(root: Path) -> Iterator[None]:
    mounted: list[Path] = []
    try:
        for source, point, args in (("proc", "proc", ["-t", "proc"]), ("sysfs", "sys", ["-t", "sysfs"]),
                                    ("/dev", "dev", ["--bind"])):
            subprocess.run(["mount", *args, source, str(root / point)], check=True)
            mounted.append(root / point)
        yield
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", "-l", str(point)], check=False)


def _build_system(site, work: Path, proxy: str, say: Callable[[str], None]) -> None:
    """debootstrap, the locale, then the system packed: root.tar.zst, vmlinuz, system.json."""
    started = time.monotonic()
    root, log = work / "root", CACHE / f"system-{system_key(site)}.log"
    log.write_text("")
    packages = packages_for(site)
    env = {"http_proxy": proxy}
    say(_("building the node image: Debian 12 with {count} packages from {mirror} through apt-cacher-ng (once per "
          "content; a few minutes; log: {log})").format(count=len(packages), mirror=site.bootstrap.mirror, log=log))
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE, str(root),
          site.bootstrap.mirror], "debootstrap", log, env)
    say(_("base system in {seconds} s; its locale, then packing it").format(
        seconds=f"{time.monotonic() - started:.0f}"))
    locale = site.cluster.locale
    (root / "etc/locale.gen").write_text(f"{locale} UTF-8\n" + ("en_US.UTF-8 UTF-8\n" if locale != "en_US.UTF-8" else ""))
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise OnehciError(f"expected one kernel in the image, found {len(kernels)}")
    with _chroot_mounts(root):
        _run(["chroot", str(root), "locale-gen"], "locale-gen", log)
        listed = subprocess.run(["chroot", str(root), "dpkg-query", "-W", "-f", "${Package} ${Version}\n"],
                                capture_output=True, text=True, check=True).stdout
    shutil.copyfile(kernels[0], work / "vmlinuz")
    _strip(root)
    # the blocks it takes, as the node's df counts them in the install's progress (not the bytes: a
    # small file takes a whole block)
    unpacked = int(subprocess.run(["du", "-s", "-B1", str(root)], capture_output=True, text=True, check=True).stdout.split()[0])
    archive = work / "root.tar.zst"
    with open(archive, "wb") as out:
        tar = subprocess.Popen(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(root), "-cf", "-",
                                "."], stdout=subprocess.PIPE)
        zstd = subprocess.run(["zstd", "-q", "-T0", "-9", "-c"], stdin=tar.stdout, stdout=out)
        tar.stdout.close()
        if tar.wait() != 0 or zstd.returncode != 0:
            raise OnehciError("packing the image failed (tar or zstd)")
    for name in ("root.tar.zst", "vmlinuz"):
        os.chmod(work / name, 0o644)  # served over TFTP and HTTP: no secret in either
    info = {"system_key": system_key(site), "suite": SUITE, "recipe": RECIPE, "locale": locale,
            "kernel": kernels[0].name.removeprefix("vmlinuz-"), "requested": packages,
            "packages": dict(line.split(" ", 1) for line in listed.splitlines() if line),
            "unpacked_bytes": unpacked, "archive_bytes": archive.stat().st_size, "sha256": file_sha256(archive),
            "system_seconds": round(time.monotonic() - started)}
    (work / "system.json").write_text(json.dumps(info, indent=2) + "\n")


def _build_installer(system: Path, work: Path, log: Path, say: Callable[[str], None]) -> None:
    """The installer environment: initramfs-tools inside the unpacked image makes the initramfs,
    with installenv/'s configuration, hook and install script (mkinitramfs -d)."""
    log.write_text("")
    info = json.loads((system / "system.json").read_text())
    say("making the installer environment (initramfs-tools, inside the image)")
    root = work / "root"
    root.mkdir()
    _run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-I", "zstd", "-C", str(root), "-xf",
          str(system / "root.tar.zst")], "unpacking the image", log)
    shutil.copytree(data_dir("installenv"), root / "tmp/onehci-installenv")
    for hook in (root / "tmp/onehci-installenv/hooks").iterdir():
        os.chmod(hook, 0o755)
    with _chroot_mounts(root):
        _run(["chroot", str(root), "mkinitramfs", "-d", "/tmp/onehci-installenv", "-o", "/tmp/installer.initrd",
              info["kernel"]], "mkinitramfs (the installer environment)", log)
    shutil.move(root / "tmp/installer.initrd", work / "installer.initrd")
    os.chmod(work / "installer.initrd", 0o644)
    for name in ("root.tar.zst", "vmlinuz", "system.json"):
        os.link(system / name, work / name)  # the same bytes, one copy on disk


def _strip(root: Path) -> None:
    """What must differ per node, or must not be served: each node makes or gets its own at install."""
    for host_key in (root / "etc/ssh").glob("ssh_host_*"):
        host_key.unlink()
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for leftover in ("etc/hostname", "etc/resolv.conf"):
        (root / leftover).unlink(missing_ok=True)
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
