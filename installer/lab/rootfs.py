"""A lab node's root filesystem: an overlay of the shared base image, and the files that
make the node look like a freshly installed site node (hostname, hosts, apt, SSH)."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from installer.errors import OnehciError

DISK_UNIT = "onehci-lab-disks.service"
CGROUP_UNIT = "onehci-lab-cgroups.service"


@dataclass(frozen=True)
class NodeFiles:
    hostname: str
    fqdn: str
    hosts: list[tuple[str, str, str]]  # (ip, fqdn, hostname) of every node
    authorized_keys: list[str]
    mirror: str
    proxy: str | None  # http://ADDRESS:3142 when the site uses apt-cacher-ng
    dns: list[str]
    disks: dict[str, str]  # /dev/disk/by-id/... -> /dev/loopN
    cgroups: tuple[str, ...] = ()  # cgroup v1 controllers bound in at installer.lab.cgroups.INSIDE


def _unescape(field: str) -> str:
    # /proc/self/mounts writes space, tab, newline and backslash as octal escapes
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below `directory`, deepest first (the order to unmount them)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = Path(_unescape(line.split()[1]))
        if point == directory or directory in point.parents:
            found.append(point)
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def mount_overlay(lower: Path, node_dir: Path) -> Path:
    """Mount NODE_DIR/root = base image + NODE_DIR/upper (writes go to upper only)."""
    root, upper, work = node_dir / "root", node_dir / "upper", node_dir / "work"
    for directory in (root, upper, work):
        directory.mkdir(parents=True, exist_ok=True)
    if root in mounts_under(root):
        return root
    proc = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", str(root)],
        capture_output=True, text=True)
    if proc.returncode != 0:
        raise OnehciError(f"cannot mount the overlay root of {node_dir.name}: {proc.stderr.strip()}")
    return root


def unmount_all(directory: Path) -> list[Path]:
    """Unmount everything mounted at or under `directory`; returns what was unmounted."""
    done = []
    for point in mounts_under(directory):
        proc = subprocess.run(["umount", str(point)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise OnehciError(f"cannot unmount {point}: {proc.stderr.strip()} (is a process still using it?)")
        done.append(point)
    return done


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write only when different: a second `lab up` leaves a running node's files alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():  # e.g. a resolv.conf link from the base image
        path.unlink()
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    path.chmod(mode)


def configure(root: Path, files: NodeFiles) -> None:
    etc = root / "etc"
    _write(etc / "hostname", files.hostname + "\n")
    # /etc/hosts once, like the installer: afterwards the common role owns it (its `mfsmaster`
    # line must survive a node's restart)
    hosts = etc / "hosts"
    if not hosts.exists() or f" {files.hostname}\n" not in hosts.read_text():
        _write(hosts, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
               + "".join(f"{ip}\t{fqdn} {name}\n" for ip, fqdn, name in files.hosts))
    _write(etc / "resolv.conf", "".join(f"nameserver {d}\n" for d in files.dns))
    if not (etc / "machine-id").read_text().strip():  # the base image's is empty; one per node
        _write(etc / "machine-id", secrets.token_hex(16) + "\n", 0o444)

    # apt as the preseed leaves an installed node: the site mirror, through the proxy
    _write(etc / "apt/sources.list",
           f"deb {files.mirror} bookworm main non-free-firmware\n"
           "deb http://security.debian.org/debian-security bookworm-security main non-free-firmware\n"
           f"deb {files.mirror} bookworm-updates main non-free-firmware\n")
    proxy_conf = etc / "apt/apt.conf.d/00onehci-proxy"
    if files.proxy:
        _write(proxy_conf, f'Acquire::http::Proxy "{files.proxy}/";\n')
    else:
        proxy_conf.unlink(missing_ok=True)

    # SSH: root by key only, like the installed nodes; host keys differ per node
    if not list((etc / "ssh").glob("ssh_host_*_key")):
        subprocess.run(["ssh-keygen", "-A", "-f", str(root)], check=True, capture_output=True)
    _write(etc / "ssh/sshd_config.d/onehci-lab.conf",
           "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n")
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(ssh_dir / "authorized_keys", "".join(k.strip() + "\n" for k in files.authorized_keys), 0o600)

    _disk_links(etc, files.disks)
    _cgroups(root, files.cgroups)


def _disk_links(etc: Path, disks: dict[str, str]) -> None:
    """What udev and the fstab generator do on a server, done by a unit at boot: there is
    no udev in a container (so the lab makes the /dev/disk/by-id links), and systemd in a
    container ignores fstab entries of devices (so the unit mounts them, like a server
    mounting its chunk disks at boot). It runs before sshd: once a node answers, both are done."""
    links = "".join(f"ExecStart=/bin/ln -sfn {dev} {link}\n".replace("%", "%%")
                    for link, dev in sorted(disks.items()))
    _write(etc / "systemd/system" / DISK_UNIT,
           "[Unit]\nDescription=onehci lab: /dev/disk/by-id links and fstab mounts of the loop-file disks\n"
           "DefaultDependencies=no\nBefore=sysinit.target local-fs.target\nAfter=local-fs-pre.target\n\n"
           "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
           f"ExecStart=/bin/mkdir -p /dev/disk/by-id\n{links}"
           "ExecStart=/bin/mount -a -O no_netdev\n\n"
           "[Install]\nWantedBy=sysinit.target\n")
    wants = etc / "systemd/system/sysinit.target.wants" / DISK_UNIT
    if not wants.is_symlink():
        wants.parent.mkdir(parents=True, exist_ok=True)
        wants.symlink_to(f"/etc/systemd/system/{DISK_UNIT}")


def _cgroups(root: Path, controllers: tuple[str, ...]) -> None:
    """A server's libvirt writes its VMs' cgroups; in a container the controllers are read-only.
    The node's own cgroups (installer/lab/cgroups.py) are bound over them before libvirtd starts."""
    from installer.lab.cgroups import INSIDE

    for name in controllers:
        (root / INSIDE.lstrip("/") / name).mkdir(parents=True, exist_ok=True)
    binds = "".join(f"ExecStart=/bin/mount --bind {INSIDE}/{name} /sys/fs/cgroup/{name}\n" for name in controllers)
    _write(root / "etc/systemd/system" / CGROUP_UNIT,
           "[Unit]\nDescription=onehci lab: the node's own cgroups, writable, for libvirt's VMs\n"
           "DefaultDependencies=no\nBefore=sysinit.target libvirtd.service\nAfter=local-fs.target\n\n"
           f"[Service]\nType=oneshot\nRemainAfterExit=yes\n{binds}\n"
           "[Install]\nWantedBy=sysinit.target\n")
    wants = root / "etc/systemd/system/sysinit.target.wants" / CGROUP_UNIT
    if not wants.is_symlink():
        wants.parent.mkdir(parents=True, exist_ok=True)
        wants.symlink_to(f"/etc/systemd/system/{CGROUP_UNIT}")


def host_key(root: Path) -> str:
    """The node's ed25519 host public key (for a known_hosts file)."""
    return " ".join((root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2])
