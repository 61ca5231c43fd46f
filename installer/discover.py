"""What is inside this server: its disks and network cards, and its `nodes:` entry.

`onehci discover` runs on each server so the technician can copy stable disk names
and the boot MAC into site.yml instead of guessing. Everything is read from sysfs;
when the udev database exists it adds by-id paths, serials as udev spells them and
the type and label of every filesystem. Without it (containers, minimal live
systems) the result says which fields could not be read.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from installer.errors import OnehciError

SYS = Path("/sys")
UDEV_DATA = Path("/run/udev/data")
MOUNTINFO = Path("/proc/self/mountinfo")
BY_ID_DIR = Path("/dev/disk/by-id")
BY_ID = "/dev/disk/by-id/"

# Block devices that are never one of the server's disks. dm and md are built on top
# of disks, which are listed themselves.
_NOT_DISKS = (("loop", "loop device"), ("zram", "compressed RAM"), ("ram", "RAM disk"),
              ("dm-", "device-mapper volume"), ("md", "software RAID"), ("sr", "optical drive"),
              ("fd", "floppy drive"), ("nbd", "network block device"))
_EMMC_AREA = re.compile(r"^mmcblk\d+(boot\d+|rpmb)$")

# By-id links named after the hardware, best first. Links named after contents
# (LVM, md, dm) change when the disk is reformatted, so they are never chosen.
_BY_ID_PREFERRED = ("ata-", "nvme-", "scsi-", "virtio-", "wwn-")
_BY_ID_CONTENT = ("dm-", "md-", "lvm-pv-uuid-")

# What the site file accepts as a serial (installer/site.py); others cannot be pasted.
_SITE_SERIAL = re.compile(r"^[A-Za-z0-9_.:+-]{1,64}$")
_PLAIN_WORD = re.compile(r"^[a-z][a-z0-9-]*$")
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9_./:+-]+$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


# --- results ------------------------------------------------------------------------

@dataclass
class Partition:
    name: str
    size_bytes: int
    fstype: str | None
    label: str | None
    mounts: list[str]  # its own mounts and those of volumes built on it (LVM, RAID)
    holders: list[str]  # dm-/md devices built on it

    @property
    def size_human(self) -> str:
        return human_size(self.size_bytes)

    def as_dict(self) -> dict:
        return {**asdict(self), "size_human": self.size_human}


@dataclass
class Disk:
    name: str
    by_id: str | None
    serial: str | None
    model: str | None
    size_bytes: int
    rotational: bool | None
    fstype: str | None  # a filesystem (or LVM/RAID member) on the whole disk
    label: str | None
    mounts: list[str]
    holders: list[str]
    partitions: list[Partition]
    unread: list[str]  # fields that could not be read on this system

    @property
    def size_human(self) -> str:
        return human_size(self.size_bytes)

    @property
    def kind(self) -> str:
        if self.name.startswith("nvme"):
            return "NVMe"
        return {True: "HDD", False: "SSD", None: "?"}[self.rotational]

    @property
    def ref(self) -> str | dict | None:
        """The disk as the site file names it, or None when it has no stable name."""
        if self.by_id:
            return self.by_id
        if self.serial and _SITE_SERIAL.match(self.serial):
            return {"serial": self.serial}
        return None

    def all_mounts(self) -> list[str]:
        return _unique(self.mounts + [m for p in self.partitions for m in p.mounts])

    def as_dict(self) -> dict:
        data = asdict(self)
        data["partitions"] = [p.as_dict() for p in self.partitions]
        return {**data, "size_human": self.size_human, "kind": self.kind}


@dataclass
class Nic:
    name: str
    mac: str | None
    link: bool
    operstate: str | None
    speed_mbps: int | None
    driver: str | None
    virtual: bool

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Skipped:
    name: str
    reason: str


@dataclass
class Discovery:
    source: str  # "udev" or "sysfs"
    hostname: str
    boot: str
    disks: list[Disk]
    nics: list[Nic]
    skipped: list[Skipped]
    notes: list[str] = field(default_factory=list)
    entry: str = ""

    @property
    def unread(self) -> list[str]:
        return sorted({f for d in self.disks for f in d.unread})

    def as_dict(self) -> dict:
        return {"source": self.source, "hostname": self.hostname, "boot": self.boot,
                "disks": [d.as_dict() for d in self.disks], "nics": [n.as_dict() for n in self.nics],
                "skipped": [asdict(s) for s in self.skipped], "unread": self.unread,
                "notes": self.notes, "entry": self.entry}


# --- small readers ------------------------------------------------------------------

def human_size(size: int) -> str:
    """Decimal units, as printed on drive labels."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip() or None
    except OSError:  # missing, or EINVAL (e.g. the speed of a card without link)
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _serial_from_vpd(path: Path) -> str | None:
    """SCSI/SATA serial from VPD page 0x80: a 4-byte header, then the serial."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    length = int.from_bytes(data[2:4], "big") if len(data) >= 4 else 0
    return data[4:4 + length].decode("ascii", "replace").strip() or None


def _clean_serial(text: str | None) -> str | None:
    # Inner blanks become '_', as udev writes them in ID_SERIAL_SHORT and by-id names.
    return "_".join(text.split()) if text and text.strip() else None


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path), key=_natural)
    except OSError:
        return []


# --- mounts -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Mount:
    dev: str  # "major:minor"
    source: str
    point: str
    fstype: str


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def read_mounts(mountinfo: Path) -> list[_Mount] | None:
    """The mount table, or None when it cannot be read."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    mounts = []
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        mounts.append(_Mount(fields[2], _unescape(tail[1]), _unescape(fields[4]), tail[0]))
    return mounts


def _own_mounts(devdir: Path, mounts: list[_Mount]) -> list[_Mount]:
    dev = _read(devdir / "dev")
    return [m for m in mounts if m.dev == dev or m.source == f"/dev/{devdir.name}"]


def _mount_points(sys_root: Path, devdir: Path, mounts: list[_Mount], depth: int = 0) -> list[str]:
    """Mount points of a device and of the LVM/RAID volumes built on it."""
    points = [m.point for m in _own_mounts(devdir, mounts)]
    if depth < 4:  # dm on md on a partition is as deep as real systems go
        for holder in _listdir(devdir / "holders"):
            points += _mount_points(sys_root, sys_root / "block" / holder, mounts, depth + 1)
    return _unique(points)


# --- udev ---------------------------------------------------------------------------

def _udev_context(sys_root: Path, udev_data: Path):
    """A pyudev context when the udev database can be used, else None."""
    # pyudev always reads the real /sys, so a fake sysfs tree never mixes with it.
    if not udev_data.is_dir() or sys_root.resolve() != Path("/sys"):
        return None
    try:
        import pyudev

        return pyudev.Context()
    except (ImportError, OSError):  # no libudev
        return None


def _udev_entry(context, udev_data: Path, devdir: Path) -> tuple[dict, list[str]] | None:
    """udev properties and /dev links of a block device, None when udev has no record."""
    dev = _read(devdir / "dev")
    if context is None or dev is None or not (udev_data / f"b{dev}").exists():
        return None
    from pyudev import DeviceNotFoundError, Devices

    try:
        device = Devices.from_name(context, "block", devdir.name)
    except DeviceNotFoundError:
        return None
    return dict(device.properties), [str(link) for link in device.device_links]


def _links_from_dir(by_id_dir: Path) -> dict[str, list[str]] | None:
    """Device name -> by-id paths, from the /dev/disk/by-id directory if there is one."""
    if not by_id_dir.is_dir():
        return None
    links: dict[str, list[str]] = {}
    for entry in by_id_dir.iterdir():
        if entry.is_symlink():
            links.setdefault(Path(os.path.realpath(entry)).name, []).append(BY_ID + entry.name)
    return links


def choose_by_id(links: list[str], serial: str | None) -> str | None:
    """The by-id path least likely to change: named after the bus and the serial."""

    def rank(link: str) -> tuple:
        name = link[len(BY_ID):]
        bus = next((i for i, p in enumerate(_BY_ID_PREFERRED) if name.startswith(p)), len(_BY_ID_PREFERRED))
        return (bus, not (serial and serial in name), len(name), name)

    candidates = [link for link in links
                  if link.startswith(BY_ID) and "/" not in link[len(BY_ID):]
                  and not link[len(BY_ID):].startswith(_BY_ID_CONTENT)
                  and not re.search(r"-part\d+$", link)]
    return min(candidates, key=rank, default=None)


# --- disks --------------------------------------------------------------------------

def _skip_reason(sys_root: Path, name: str) -> str | None:
    for prefix, reason in _NOT_DISKS:
        if name.startswith(prefix):
            return reason
    if _EMMC_AREA.match(name):
        return "eMMC boot area"
    devdir = sys_root / "block" / name
    if _read(devdir / "removable") == "1":
        return "removable"
    # USB disks often say removable=0, but they are install media, not cluster disks.
    if "/usb" in os.path.realpath(devdir):
        return "USB"
    if not _read_int(devdir / "size"):
        return "no medium"
    return None


def _scan_disk(sys_root: Path, name: str, mounts: list[_Mount] | None, context, udev_data: Path,
               dir_links: dict[str, list[str]] | None) -> Disk:
    devdir = sys_root / "block" / name
    serial = _clean_serial(_read(devdir / "device/serial") or _serial_from_vpd(devdir / "device/vpd_pg80")
                           or _read(devdir / "serial"))
    rotational = _read(devdir / "queue/rotational")
    disk = Disk(name=name, by_id=None, serial=serial, model=_read(devdir / "device/model"),
                size_bytes=(_read_int(devdir / "size") or 0) * 512,
                rotational=None if rotational is None else rotational == "1",
                fstype=None, label=None, mounts=[], holders=_listdir(devdir / "holders"),
                partitions=[], unread=[])
    filesystems_known = True

    udev = _udev_entry(context, udev_data, devdir)
    if udev:
        props, links = udev
        disk.serial = props.get("ID_SERIAL_SHORT") or disk.serial
        disk.model = disk.model or (props.get("ID_MODEL") or "").replace("_", " ") or None
        disk.fstype, disk.label = props.get("ID_FS_TYPE"), props.get("ID_FS_LABEL")
    else:
        links = dir_links.get(name, []) if dir_links is not None else None
        filesystems_known = False
    if links is not None:
        disk.by_id = choose_by_id(links, disk.serial)

    if mounts is not None:
        disk.mounts = _mount_points(sys_root, devdir, mounts)
        disk.fstype = disk.fstype or next((m.fstype for m in _own_mounts(devdir, mounts)), None)

    parts = [p for p in _listdir(devdir) if (devdir / p / "partition").exists()]
    for part in sorted(parts, key=lambda p: _read_int(devdir / p / "partition") or 0):
        pdir = devdir / part
        partition = Partition(name=part, size_bytes=(_read_int(pdir / "size") or 0) * 512, fstype=None,
                              label=None, mounts=[], holders=_listdir(pdir / "holders"))
        pudev = _udev_entry(context, udev_data, pdir)
        if pudev:
            partition.fstype, partition.label = pudev[0].get("ID_FS_TYPE"), pudev[0].get("ID_FS_LABEL")
        else:
            filesystems_known = False
        if mounts is not None:
            partition.mounts = _mount_points(sys_root, pdir, mounts)
            partition.fstype = partition.fstype or next((m.fstype for m in _own_mounts(pdir, mounts)), None)
        disk.partitions.append(partition)

    if links is None or (udev and disk.by_id is None):
        disk.unread.append("by_id")
    disk.unread += [f for f in ("serial", "model", "rotational") if getattr(disk, f) is None]
    if not filesystems_known:
        disk.unread.append("filesystem")
    if mounts is None:
        disk.unread.append("mounts")
    return disk


# --- network cards ------------------------------------------------------------------

def scan_nics(sys_root: Path = SYS, include_virtual: bool = False) -> list[Nic]:
    """Network cards, by name. Interfaces without a device behind them (bridges,
    bonds, tunnels, veth) are left out unless include_virtual; lo always is."""
    net = sys_root / "class/net"
    try:
        names = sorted(os.listdir(net), key=_natural)
    except OSError as exc:
        raise OnehciError(f"cannot read {net} ({exc.strerror}): `onehci discover` must run on "
                          "the server itself, on Linux with sysfs mounted") from None
    nics = []
    for name in names:
        base = net / name
        virtual = not (base / "device").exists()
        if name == "lo" or (virtual and not include_virtual):
            continue
        carrier, operstate = _read(base / "carrier"), _read(base / "operstate")
        speed = _read_int(base / "speed")
        driver = base / "device/driver"
        nics.append(Nic(name=name, mac=(_read(base / "address") or "").lower() or None,
                        link=carrier == "1" if carrier is not None else operstate == "up",
                        operstate=operstate, speed_mbps=speed if speed and speed > 0 else None,
                        driver=driver.resolve().name if driver.exists() else None, virtual=virtual))
    return nics


# --- the nodes[] entry --------------------------------------------------------------

def _yaml_scalar(text: str) -> str:
    """Plain when YAML reads it back as the same string, else double-quoted."""
    if (_PLAIN_WORD.match(text) and text not in _YAML_WORDS) or _PLAIN_PATH.match(text):
        return text
    return json.dumps(text)


def _disk_yaml(disk: Disk) -> str:
    ref = disk.ref
    if isinstance(ref, dict):
        return "{serial: " + _yaml_scalar(ref["serial"]) + "}"
    return _yaml_scalar(ref) if ref else ""


def _disk_comment(disk: Disk) -> str:
    words = f"{disk.name}, {disk.size_human} {disk.kind}"
    if disk.model:
        words += f" {disk.model}"
    mounts = disk.all_mounts()
    if mounts:
        words += ", holds " + " ".join(mounts)
    elif disk.partitions or disk.fstype:
        words += ", has partitions or data"
    return words


def boot_mode(sys_root: Path = SYS) -> str:
    return "uefi" if (sys_root / "firmware/efi").is_dir() else "bios"


def entry_nic(nics: list[Nic]) -> Nic | None:
    """The card whose MAC goes in the entry: a physical one with link if possible."""
    candidates = [n for n in nics if n.mac and not n.virtual] or [n for n in nics if n.mac]
    return next((n for n in candidates if n.link), candidates[0] if candidates else None)


def os_disk(disks: list[Disk]) -> Disk | None:
    """The disk holding / if one does, else the first."""
    return next((d for d in disks if "/" in d.all_mounts()), disks[0] if disks else None)


def node_entry(disks: list[Disk], nics: list[Nic], hostname: str, boot: str) -> str:
    """A `nodes:` list item for site.yml, indented to paste under `nodes:`."""
    lines = [f"  - hostname: {_yaml_scalar(hostname)}  # this system's name; change it if needed"]
    nic = entry_nic(nics)
    if nic:
        speed = f", {nic.speed_mbps} Mb/s" if nic.speed_mbps else ""
        lines.append(f"    mac: {_yaml_scalar(nic.mac)}  # {nic.name}, link {'up' if nic.link else 'down'}{speed}")
    else:
        lines.append("    mac: CHANGE-ME  # no network card found")
    lines.append(f"    boot: {boot}")
    lines.append("    roles: [kvm, mfs_chunkserver]  # placeholder: set this node's roles")
    first = os_disk(disks)
    if first is None:
        lines.append("    os_disk: CHANGE-ME  # no disk found")
    elif first.ref is None:
        lines.append(f"    os_disk: CHANGE-ME  # {_disk_comment(first)}: no by-id path or serial known")
    else:
        lines.append(f"    os_disk: {_disk_yaml(first)}  # {_disk_comment(first)}")
    others = [d for d in disks if d is not first]
    if not others:
        lines.append("    chunk_disks: []")
    else:
        lines.append("    chunk_disks:  # every disk listed here is wiped")
        for disk in others:
            if disk.ref is None:
                lines.append(f"      # - {disk.name}: no by-id path or serial known; name it by hand")
            else:
                lines.append(f"      - {_disk_yaml(disk)}  # {_disk_comment(disk)}")
    return "\n".join(lines) + "\n"


# --- all together -------------------------------------------------------------------

def discover(*, sys_root: Path = SYS, udev_data: Path = UDEV_DATA, mountinfo: Path = MOUNTINFO,
             by_id_dir: Path = BY_ID_DIR, include_virtual: bool = False,
             hostname: str | None = None) -> Discovery:
    """Disks and network cards of the running system, and its ready-to-paste entry."""
    block = sys_root / "block"
    try:
        names = sorted(os.listdir(block), key=_natural)
    except OSError as exc:
        raise OnehciError(f"cannot read {block} ({exc.strerror}): `onehci discover` must run on "
                          "the server itself, on Linux with sysfs mounted") from None

    context = _udev_context(sys_root, udev_data)
    mounts = read_mounts(mountinfo)
    dir_links = _links_from_dir(by_id_dir)
    disks, skipped = [], []
    for name in names:
        reason = _skip_reason(sys_root, name)
        if reason:
            skipped.append(Skipped(name, reason))
        else:
            disks.append(_scan_disk(sys_root, name, mounts, context, udev_data, dir_links))
    nics = scan_nics(sys_root, include_virtual)

    host = (hostname or socket.gethostname()).lower().split(".")[0]
    result = Discovery(source="udev" if context else "sysfs", hostname=host, boot=boot_mode(sys_root),
                       disks=disks, nics=nics, skipped=skipped)
    result.notes = _notes(result, udev_data, mountinfo)
    result.entry = node_entry(disks, nics, host, result.boot)
    return result


def _notes(result: Discovery, udev_data: Path, mountinfo: Path) -> list[str]:
    notes = []
    if result.source == "sysfs":
        notes.append(f"No udev database at {udev_data}, so this was read from sysfs alone.")
    unread = result.unread
    if unread:
        notes.append(f"Could not read: {', '.join(unread)} (see each disk). Where a disk has no by-id "
                     "path it is named by serial; check the serials against the drive labels.")
    if "filesystem" in unread:
        notes.append("Filesystems that are not mounted are not shown: a disk without partitions "
                     "here may still hold data.")
    if "mounts" in unread:
        notes.append(f"Could not read {mountinfo}: which disk holds / is unknown.")
    if not result.disks:
        notes.append("No disks found.")
    if not result.nics:
        notes.append("No network card found.")
    elif not any(n.link for n in result.nics):
        notes.append("No network card has a link: the entry uses the first card's MAC; "
                     "use the MAC of the card that PXE boots.")
    return notes
