"""`onehci discover`: on this machine's real sysfs, on a fake sysfs tree, and through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
import yaml

from installer import discover as disc
from installer.cli.main import cli
from installer.errors import OnehciError
from installer.site import Node

SYS = Path("/sys")


def parse_entry(text: str) -> dict:
    items = yaml.safe_load(text)
    assert isinstance(items, list) and len(items) == 1
    return items[0]


# --- this machine ---------------------------------------------------------------------
# It has /sys/block/vda, loop and zram devices, and no udev database.

def test_real_disks_from_sysfs():
    result = disc.discover()
    by_name = {d.name: d for d in result.disks}

    assert "vda" in by_name
    assert by_name["vda"].size_bytes == int((SYS / "block/vda/size").read_text()) * 512
    assert by_name["vda"].size_bytes > 0

    loops = {n for n in os.listdir(SYS / "block") if n.startswith(("loop", "zram"))}
    assert loops, "this machine is expected to have loop/zram devices"
    assert not loops & set(by_name)
    assert loops <= {s.name for s in result.skipped}

    assert result.source == "sysfs"
    assert "by_id" in by_name["vda"].unread and "filesystem" in by_name["vda"].unread
    assert "by_id" in result.unread
    assert any("udev" in note for note in result.notes)


def test_real_entry_names_the_root_disk_and_validates():
    result = disc.discover(hostname="Node1.Example.org")
    root_disk = disc.os_disk(result.disks)
    assert "/" in root_disk.all_mounts()  # / is on a disk of this machine

    entry = parse_entry(result.entry)
    assert entry["hostname"] == "node1"
    assert entry["os_disk"] == root_disk.ref
    assert entry["boot"] == ("uefi" if (SYS / "firmware/efi").is_dir() else "bios")
    node = Node.model_validate(entry)
    assert node.mac == entry["mac"]


def test_real_nics_match_sys_class_net():
    net = SYS / "class/net"
    names = set(os.listdir(net)) - {"lo"}
    physical = {n for n in names if (net / n / "device").exists()}

    everything = disc.scan_nics(include_virtual=True)
    assert {n.name for n in everything} == names
    for nic in everything:
        assert nic.mac == (net / nic.name / "address").read_text().strip().lower()
        assert nic.virtual == (nic.name not in physical)

    assert {n.name for n in disc.scan_nics()} == physical


# --- a fake sysfs tree ----------------------------------------------------------------

def write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content + "\n")


def block(sys_root: Path, name: str, dev: str, sectors: int, *, removable: str = "0",
          rotational: str | None = None) -> Path:
    d = sys_root / "block" / name
    write(d / "dev", dev)
    write(d / "size", str(sectors))
    write(d / "removable", removable)
    if rotational is not None:
        write(d / "queue/rotational", rotational)
    (d / "holders").mkdir(parents=True, exist_ok=True)
    return d


def partition(disk: Path, name: str, number: int, dev: str, sectors: int) -> Path:
    p = disk / name
    write(p / "partition", str(number))
    write(p / "dev", dev)
    write(p / "size", str(sectors))
    (p / "holders").mkdir(parents=True, exist_ok=True)
    return p


def nic(sys_root: Path, name: str, mac: str, *, carrier: str | None, operstate: str,
        speed: str | None = None, physical: bool = True) -> None:
    d = sys_root / "class/net" / name
    write(d / "address", mac)
    write(d / "operstate", operstate)
    if carrier is not None:
        write(d / "carrier", carrier)
    if speed is not None:
        write(d / "speed", speed)
    if physical:
        write(d / "device/driver/.keep", "")


@pytest.fixture
def fake(tmp_path: Path) -> dict:
    """A server: an NVMe OS disk (LVM on p3), a SATA HDD with data, a USB stick, a loop."""
    sys_root = tmp_path / "sys"
    (sys_root / "firmware/efi").mkdir(parents=True)

    nvme = block(sys_root, "nvme0n1", "259:0", 1953525168, rotational="0")
    write(nvme / "device/serial", "S45PNA0M200001      ")  # NVMe pads serials with blanks
    write(nvme / "device/model", "Samsung SSD 970 EVO 1TB")
    partition(nvme, "nvme0n1p1", 1, "259:1", 1048576)
    partition(nvme, "nvme0n1p2", 2, "259:2", 2097152)
    p3 = partition(nvme, "nvme0n1p3", 3, "259:3", 1900000000)
    (p3 / "holders/dm-0").mkdir(parents=True)
    write(sys_root / "block/dm-0/dev", "253:0")
    write(sys_root / "block/dm-0/size", "1900000000")

    sda = block(sys_root, "sda", "8:0", 7814037168, rotational="1")
    write(sda / "device/model", "ST4000NM0035")
    write(sda / "device/vpd_pg80", b"\x00\x80\x00\x0a  ZC18A201")
    partition(sda, "sda1", 1, "8:1", 7814035456)

    sdb = block(sys_root, "sdb", "8:16", 30031872, removable="1", rotational="1")
    write(sdb / "device/vpd_pg80", b"\x00\x80\x00\x04USB1")
    block(sys_root, "loop0", "7:0", 204800, rotational="1")

    nic(sys_root, "eno1", "3C:EC:EF:00:00:01", carrier="0", operstate="down")
    nic(sys_root, "eno2", "3C:EC:EF:00:00:02", carrier="1", operstate="up", speed="10000")
    nic(sys_root, "br0", "3c:ec:ef:00:00:02", carrier="1", operstate="up", physical=False)
    nic(sys_root, "lo", "00:00:00:00:00:00", carrier="1", operstate="unknown", physical=False)

    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 259:2 / / rw,relatime - ext4 /dev/nvme0n1p2 rw\n"
        "23 22 259:1 / /boot/efi rw,relatime - vfat /dev/nvme0n1p1 rw\n"
        "24 22 253:0 / /var/lib/one rw,relatime - xfs /dev/mapper/vg-one rw\n"
        "25 22 8:1 / /srv/old\\040data rw,relatime - xfs /dev/sda1 rw\n"
        "26 22 0:5 / /proc rw - proc proc rw\n")
    args = dict(sys_root=sys_root, udev_data=tmp_path / "no-udev", mountinfo=mountinfo,
                by_id_dir=tmp_path / "no-by-id")
    return {"root": tmp_path, "sys": sys_root, "args": args}


def test_fake_disks_listed_and_left_out(fake):
    result = disc.discover(**fake["args"], hostname="hci1")

    assert [d.name for d in result.disks] == ["nvme0n1", "sda"]
    skipped = {s.name: s.reason for s in result.skipped}
    assert skipped == {"dm-0": "device-mapper volume", "loop0": "loop device", "sdb": "removable"}
    assert result.source == "sysfs"
    assert result.boot == "uefi"

    nvme, sda = result.disks
    assert nvme.serial == "S45PNA0M200001"
    assert nvme.model == "Samsung SSD 970 EVO 1TB"
    assert nvme.rotational is False and nvme.kind == "NVMe"
    assert nvme.size_bytes == 1953525168 * 512
    assert [p.name for p in nvme.partitions] == ["nvme0n1p1", "nvme0n1p2", "nvme0n1p3"]
    assert nvme.partitions[1].mounts == ["/"] and nvme.partitions[1].fstype == "ext4"
    assert nvme.partitions[2].mounts == ["/var/lib/one"]  # through the LVM volume dm-0
    assert nvme.partitions[2].holders == ["dm-0"]

    assert sda.serial == "ZC18A201"  # from the VPD page, header and padding removed
    assert sda.rotational is True and sda.kind == "HDD"
    assert sda.size_human == "4.0 TB"
    assert sda.all_mounts() == ["/srv/old data"]  # mountinfo escapes are decoded
    assert sda.unread == ["by_id", "filesystem"]
    assert "by_id" in result.unread


def test_fake_entry_parses_and_validates(fake):
    result = disc.discover(**fake["args"], hostname="HCI1.example.org")
    entry = parse_entry(result.entry)

    assert entry["hostname"] == "hci1"
    assert entry["mac"] == "3c:ec:ef:00:00:02"  # eno2 has the link, eno1 does not
    assert entry["boot"] == "uefi"
    assert entry["roles"] == ["kvm", "mfs_chunkserver"]
    assert entry["os_disk"] == {"serial": "S45PNA0M200001"}  # the disk holding /
    assert entry["chunk_disks"] == [{"serial": "ZC18A201"}]  # not the USB stick
    assert "holds /srv/old data" in result.entry  # the technician sees sda has data

    node = Node.model_validate(entry)
    assert node.os_disk.serial == "S45PNA0M200001"
    assert [d.serial for d in node.chunk_disks] == ["ZC18A201"]


def test_fake_by_id_links_are_used_and_the_stable_one_chosen(fake):
    by_id = fake["root"] / "dev/disk/by-id"
    by_id.mkdir(parents=True)
    for dev in ("nvme0n1", "nvme0n1p3", "sda", "sda1"):
        (fake["root"] / "dev" / dev).touch()
    links = {
        "nvme-eui.0025385b71b0a1b2": "nvme0n1",
        "nvme-Samsung_SSD_970_EVO_1TB_S45PNA0M200001_1": "nvme0n1",
        "nvme-Samsung_SSD_970_EVO_1TB_S45PNA0M200001": "nvme0n1",
        "lvm-pv-uuid-Xk3d": "nvme0n1p3",
        "wwn-0x5000c500a1b2c3d4": "sda",
        "ata-ST4000NM0035_ZC18A201": "sda",
        "ata-ST4000NM0035_ZC18A201-part1": "sda1",
    }
    for name, target in links.items():
        (by_id / name).symlink_to(f"../../{target}")

    result = disc.discover(**{**fake["args"], "by_id_dir": by_id}, hostname="hci1")
    nvme, sda = result.disks
    assert nvme.by_id == "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_1TB_S45PNA0M200001"
    assert sda.by_id == "/dev/disk/by-id/ata-ST4000NM0035_ZC18A201"
    assert "by_id" not in sda.unread and "filesystem" in sda.unread

    node = Node.model_validate(parse_entry(result.entry))
    assert node.os_disk.by_id == nvme.by_id
    assert [d.by_id for d in node.chunk_disks] == [sda.by_id]


def test_by_id_choice_prefers_the_serial_and_skips_content_links():
    links = ["/dev/disk/by-id/scsi-35000c500a1b2c3d4", "/dev/disk/by-id/dm-uuid-LVM-abc",
             "/dev/disk/by-id/scsi-SATA_ST4000NM0035_ZC18A201", "/dev/disk/by-id/scsi-SATA_ST4000NM0035_ZC18A201-part1"]
    assert disc.choose_by_id(links, "ZC18A201") == "/dev/disk/by-id/scsi-SATA_ST4000NM0035_ZC18A201"
    assert disc.choose_by_id(["/dev/disk/by-id/lvm-pv-uuid-Xk3d", "/dev/disk/by-id/md-uuid-1"], None) is None
    # the bus comes first: an ata- link beats a wwn- link even without the serial in it
    assert disc.choose_by_id(["/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", "/dev/disk/by-id/ata-ST4000NM0035-2AF1_WCT0000000"],
                             "ZC18A201") == "/dev/disk/by-id/ata-ST4000NM0035-2AF1_WCT0000000"


def test_os_disk_is_the_one_holding_root_not_the_first(fake):
    mountinfo = fake["args"]["mountinfo"]
    mountinfo.write_text("22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n")
    result = disc.discover(**fake["args"], hostname="hci1")
    assert [d.name for d in result.disks] == ["nvme0n1", "sda"]
    entry = parse_entry(result.entry)
    assert entry["os_disk"] == {"serial": "ZC18A201"}
    assert entry["chunk_disks"] == [{"serial": "S45PNA0M200001"}]


def test_fake_nics(fake):
    nics = disc.scan_nics(fake["sys"])
    assert [n.name for n in nics] == ["eno1", "eno2"]  # no bridge, no lo
    eno1, eno2 = nics
    assert eno1.mac == "3c:ec:ef:00:00:01" and eno1.link is False and eno1.speed_mbps is None
    assert eno2.link is True and eno2.speed_mbps == 10000 and eno2.driver == "driver"

    with_virtual = disc.scan_nics(fake["sys"], include_virtual=True)
    assert [n.name for n in with_virtual] == ["br0", "eno1", "eno2"]
    assert with_virtual[0].virtual is True


def test_no_link_falls_back_to_first_card_with_a_note(fake):
    (fake["sys"] / "class/net/eno2/carrier").write_text("0\n")
    result = disc.discover(**fake["args"], hostname="hci1")
    assert parse_entry(result.entry)["mac"] == "3c:ec:ef:00:00:01"
    assert any("No network card has a link" in note for note in result.notes)


def test_unreadable_sysfs_is_a_clear_error(tmp_path):
    with pytest.raises(OnehciError, match=r"cannot read .*block"):
        disc.discover(sys_root=tmp_path / "nothing")


def test_as_dict_is_json(fake):
    data = json.loads(json.dumps(disc.discover(**fake["args"], hostname="hci1").as_dict()))
    assert data["source"] == "sysfs"
    assert data["disks"][1]["serial"] == "ZC18A201"
    assert data["disks"][1]["size_human"] == "4.0 TB"
    assert data["nics"][1]["speed_mbps"] == 10000
    assert data["unread"] == ["by_id", "filesystem"]


# --- the command ----------------------------------------------------------------------

def test_cli_json():
    result = CliRunner().invoke(cli, ["discover", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert "disks" in data and "nics" in data
    assert "vda" in [d["name"] for d in data["disks"]]
    assert data["entry"].lstrip().startswith("- hostname:")


def test_cli_human():
    result = CliRunner().invoke(cli, ["discover"])
    assert result.exit_code == 0, result.output
    assert "vda" in result.stdout
    assert "Paste under nodes:" in result.stdout
    assert "roles: [kvm, mfs_chunkserver]" in result.stdout  # not eaten as rich markup


def test_cli_error_is_one_line(monkeypatch):
    def broken(**_kwargs):
        raise OnehciError("cannot read /sys/block (Permission denied)")

    monkeypatch.setattr(disc, "discover", broken)
    result = CliRunner().invoke(cli, ["discover"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: cannot read /sys/block (Permission denied)"
