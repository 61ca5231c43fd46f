"""The chunk disk module of roles/moosefs_chunkserver: resolution, classification and refusals,
with a fake system, then for real on loop devices (root, as every developer and CI here)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LIBRARY = REPO / "roles" / "moosefs_chunkserver" / "library"
SPEC = importlib.util.spec_from_file_location("onehci_chunk_disks", LIBRARY / "onehci_chunk_disks.py")
mod = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(mod)


class FakeSystem(mod.System):
    """Devices are plain files under tmp_path; what blkid and sysfs would say is given."""

    def __init__(self, probes=None, parts=None, mounts=(), swaps=(), holders=None):
        super().__init__(None)
        self.probes, self.parts, self._mounts = probes or {}, parts or {}, list(mounts)
        self._swaps, self._holders = list(swaps), holders or {}

    def blkid(self, device):
        return dict(self.probes.get(os.path.basename(device), {}))

    def partitions(self, device):
        return self.parts.get(os.path.basename(device), [])

    def holders(self, name):
        return self._holders.get(name, [])

    def mounts(self):
        return self._mounts

    def swaps(self):
        return self._swaps

    def majmin(self, path):
        return f"7:{os.path.basename(path)}"

    def sys_majmin(self, name):
        return f"7:{name}"


@pytest.fixture
def byid(tmp_path):
    """A by-id directory whose links point to fake devices sda, sdb, nvme0n1."""
    links = tmp_path / "by-id"
    links.mkdir()
    for dev, names in {"sda": ["ata-ST4000_ZFN01", "ata-ST4000_ZFN01-part1", "wwn-0x5000"],
                       "sdb": ["ata-ST4000_ZFN02"],
                       "nvme0n1": ["nvme-Samsung_SSD_S3Z9", "nvme-Samsung_SSD_S3Z9_1"]}.items():
        (tmp_path / dev).touch()
        for name in names:
            (links / name).symlink_to(tmp_path / dev)
    return links


def run(byid, disks, system, consent=(), require=False):
    return mod.inspect(disks, list(consent), "onehci-mfs", "/mnt/mfschunks", str(byid), system, require)


def test_serial_resolves_to_the_whole_disk_not_its_partition(byid):
    records, problems, _ = run(byid, [{"serial": "ZFN01"}], FakeSystem())
    assert problems == []
    (disk,) = records
    assert disk["link"].endswith("ata-ST4000_ZFN01") and disk["device"].endswith("/sda")
    assert disk["name"] == "ZFN01" and disk["mountpoint"] == "/mnt/mfschunks/ZFN01"
    assert disk["state"] == "blank" and disk["id"] == "serial:ZFN01"


def test_by_id_path_is_named_after_its_link(byid):
    records, problems, _ = run(byid, [str(byid / "ata-ST4000_ZFN02")], FakeSystem())
    assert problems == [] and records[0]["name"] == "ata-ST4000_ZFN02"


def test_unknown_missing_and_ambiguous_disks_are_reported(byid, tmp_path):
    (tmp_path / "sdc").touch()
    (byid / "usb-Other_S3Z9").symlink_to(tmp_path / "sdc")  # a second disk ending in S3Z9
    _, problems, need = run(byid, [{"serial": "NOPE"}, "/dev/disk/by-id/missing", {"serial": "S3Z9"}],
                            FakeSystem())
    assert len(problems) == 3 and need == []
    assert "no disk with this serial" in problems[0]
    assert "no such disk" in problems[1]
    assert "several disks" in problems[2]


def test_nvme_namespace_link_of_the_same_disk_is_not_ambiguous(byid):
    records, problems, _ = run(byid, [{"serial": "S3Z9"}], FakeSystem())
    assert problems == [] and records[0]["device"].endswith("/nvme0n1")


def test_a_disk_holding_a_filesystem_is_refused_and_named(byid):
    system = FakeSystem(probes={"sdb": {"TYPE": "ext4", "LABEL": "backup", "UUID": "x"}})
    records, problems, need = run(byid, [{"serial": "ZFN01"}, {"serial": "ZFN02"}], system)
    assert [r["id"] for r in records] == ["serial:ZFN01"]
    assert problems == [f"serial:ZFN02 ({byid.parent}/sdb) holds an ext4 filesystem labelled 'backup'"]
    assert need == ["serial:ZFN02"]


def test_partitions_are_described(byid):
    system = FakeSystem(probes={"sda": {"PTTYPE": "gpt"}}, parts={"sda": ["sda1", "sda2"]})
    _, problems, need = run(byid, [{"serial": "ZFN01"}], system)
    assert "holds a gpt partition table with 2 partition(s) (sda1: no filesystem, sda2: no filesystem)" in problems[0]
    assert need == ["serial:ZFN01"]


@pytest.mark.parametrize("consent", ["serial:ZFN02", "{byid}/ata-ST4000_ZFN02", "{byid}/ata-ST4000_ZFN02-alias"])
def test_consent_by_serial_or_by_any_link_to_the_disk(byid, consent):
    (byid / "ata-ST4000_ZFN02-alias").symlink_to(os.path.realpath(byid / "ata-ST4000_ZFN02"))
    system = FakeSystem(probes={"sdb": {"TYPE": "ext4"}})
    records, problems, _ = run(byid, [{"serial": "ZFN02"}], system, consent=[consent.format(byid=byid)])
    assert problems == [] and records[0]["state"] == "consented"


def test_our_own_xfs_is_kept_and_never_reformatted(byid):
    system = FakeSystem(probes={"sda": {"TYPE": "xfs", "LABEL": "onehci-mfs", "UUID": "u-1"}},
                        mounts=[("7:sda", "/mnt/mfschunks/ZFN01")])
    records, problems, _ = run(byid, [{"serial": "ZFN01"}], system, consent=["serial:ZFN01"], require=True)
    assert problems == [] and records[0]["state"] == "ours" and records[0]["uuid"] == "u-1"


def test_xfs_with_another_label_needs_consent(byid):
    system = FakeSystem(probes={"sda": {"TYPE": "xfs", "LABEL": "other", "UUID": "u-1"}})
    _, problems, need = run(byid, [{"serial": "ZFN01"}], system)
    assert need == ["serial:ZFN01"] and "xfs filesystem labelled 'other'" in problems[0]


@pytest.mark.parametrize("system, use", [
    (FakeSystem(mounts=[("7:sda", "/")]), "sda mounted at /"),
    (FakeSystem(parts={"sda": ["sda1"]}, probes={"sda": {"PTTYPE": "dos"}}, mounts=[("7:sda1", "/boot")]),
     "sda1 mounted at /boot"),
    (FakeSystem(swaps=["/dev/sda"]), "sda is swap"),
    (FakeSystem(holders={"sda": ["dm-0"]}), "sda held by dm-0"),
])
def test_a_disk_in_use_is_refused_even_with_consent(byid, system, use):
    _, problems, need = run(byid, [{"serial": "ZFN01"}], system, consent=["serial:ZFN01"])
    assert len(problems) == 1 and use in problems[0] and "even with consent" in problems[0]
    assert need == []


def test_the_same_disk_twice_is_reported(byid):
    _, problems, _ = run(byid, [{"serial": "ZFN01"}, str(byid / "wwn-0x5000")], FakeSystem())
    assert len(problems) == 1 and "the same disk" in problems[0]


def test_after_formatting_every_disk_must_be_ours(byid):
    _, problems, _ = run(byid, [{"serial": "ZFN01"}], FakeSystem(), require=True)
    assert problems and "was not formatted" in problems[0]


@pytest.mark.parametrize("entry", ["relative/path", {"serial": ""}, {"serial": "X", "size": 1}, 42])
def test_malformed_entries_are_reported(byid, entry):
    _, problems, _ = run(byid, [entry], FakeSystem())
    assert len(problems) == 1 and "absolute /dev/disk/by-id path" in problems[0]


# --- for real: loop devices, blkid, the module run by Ansible -----------------------------------------

def sh(*args) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def loops(tmp_path):
    """Two loop devices: one blank, one holding an ext4 filesystem; by-id style links to them."""
    assert os.geteuid() == 0, "this test needs root (loop devices), as on every machine of this project"
    devices = []
    links = tmp_path / "by-id"
    links.mkdir()
    try:
        for name in ("blank", "ext4"):
            img = tmp_path / f"{name}.img"
            with open(img, "wb") as f:
                f.truncate(64 * 1024 * 1024)
            if name == "ext4":
                sh("mkfs.ext4", "-q", "-F", "-L", "data", str(img))
            dev = sh("losetup", "--find", "--show", str(img))
            devices.append(dev)
            (links / f"virtio-t{os.getpid()}-{name}").symlink_to(dev)
        yield links
    finally:
        for dev in devices:
            subprocess.run(["losetup", "-d", dev], check=False)


def run_module(links, args: dict, tmp_path) -> tuple[int, dict]:
    env = dict(os.environ, ANSIBLE_LIBRARY=str(LIBRARY), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_NOCOLOR="1")
    run = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-o", "-m", "onehci_chunk_disks",
                          "-a", json.dumps({**args, "by_id_dir": str(links)}),
                          "-e", f"ansible_python_interpreter={sys.executable}"],
                         env=env, capture_output=True, text=True)
    # one line per host: "localhost | SUCCESS => {...}"
    line = run.stdout.strip().splitlines()[-1]
    result = {**json.loads(line.split("=> ", 1)[1]), "_line": line}
    return run.returncode, result


def test_real_disks_blank_is_accepted_ext4_is_refused_with_its_label(loops, tmp_path):
    pid = os.getpid()
    rc, result = run_module(loops, {"disks": [{"serial": f"t{pid}-blank"}, {"serial": f"t{pid}-ext4"}]}, tmp_path)
    assert rc != 0 and "FAILED" in result["_line"]
    assert f"serial:t{pid}-ext4" in result["msg"] and "ext4 filesystem labelled 'data'" in result["msg"]
    assert "onehci_format_consent" in result["msg"]
    assert [d["state"] for d in result["disks"]] == ["blank"]

    rc, result = run_module(loops, {"disks": [{"serial": f"t{pid}-blank"}, {"serial": f"t{pid}-ext4"}],
                                    "consent": [f"serial:t{pid}-ext4"]}, tmp_path)
    assert rc == 0 and not result["changed"]
    assert [d["state"] for d in result["disks"]] == ["blank", "consented"]
