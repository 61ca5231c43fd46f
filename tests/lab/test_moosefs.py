"""`onehci deploy` on a real 3-node lab: a MooseFS cluster whose health is read with mfscli
from the boot server, data that crosses nodes intact, a second deploy that changes nothing,
and the guards that keep data safe (metadata, formatted disks)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from installer import lab, mfs, sitefile
from installer.siteinit import profile_site

SITE = profile_site("lab")
MASTER_IP = "10.71.0.11"
MOUNT = "/var/lib/one/datastores"


def deploy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "installer", "deploy", "--json", *args, str(SITE)],
                          capture_output=True, text=True)


def sh(loaded, node: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = lab.node_exec(loaded, node, ["sh", "-c", script], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, f"{node}: {script}: {proc.stdout}{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def cluster():
    """A fresh 3-node lab, deployed once for the module; torn down at the end."""
    loaded = sitefile.load(SITE)
    lab.down(loaded)
    lab.up(loaded)
    first = deploy()
    assert first.returncode == 0, first.stderr[-3000:]
    try:
        yield loaded
    finally:
        assert lab.down(loaded) is not None


def test_mfscli_sees_every_server(cluster):
    health = mfs.health(MASTER_IP)
    assert health.reachable, health.error
    assert sorted(c.ip for c in health.chunkservers) == ["10.71.0.11", "10.71.0.12", "10.71.0.13"]
    assert sorted(health.metaloggers) == ["10.71.0.12", "10.71.0.13"]


def test_data_written_on_one_node_reads_back_on_another(cluster):
    sh(cluster, "lab2", f"head -c 200M /dev/urandom > {MOUNT}/probe.bin && sync")
    written = sh(cluster, "lab2", f"sha256sum {MOUNT}/probe.bin").stdout.split()[0]
    read = sh(cluster, "lab3", f"sha256sum {MOUNT}/probe.bin").stdout.split()[0]
    assert written == read and len(written) == 64
    goal = sh(cluster, "lab3", f"mfsgetgoal {MOUNT}/probe.bin").stdout
    assert goal.strip().endswith(": 2"), goal  # storage.goal of the site


def test_second_deploy_changes_nothing(cluster):
    import json

    again = deploy()
    assert again.returncode == 0, again.stderr[-3000:]
    recap = json.loads(again.stdout)["recap"]
    assert sorted(recap) == ["lab1", "lab2", "lab3"]
    assert {host: r["changed"] for host, r in recap.items()} == {"lab1": 0, "lab2": 0, "lab3": 0}


def test_metadata_guard_refuses_and_touches_nothing(cluster):
    """metadata.mfs gone but changelogs present: a fresh metadata file would destroy the
    filesystem, so deploy stops and the master's data directory stays as it was."""
    sh(cluster, "lab1", "systemctl stop moosefs-master")
    sh(cluster, "lab1", "cd /var/lib/mfs && ls changelog.* >/dev/null && mkdir -p /root/guard && "
                        "mv metadata.mfs* /root/guard/ 2>/dev/null; ls")
    digest = lambda: sh(cluster, "lab1", "cd /var/lib/mfs && find . -type f | sort | xargs sha256sum").stdout  # noqa: E731
    before = digest()
    refused = deploy("--limit", "lab1")
    assert refused.returncode == 1
    assert "recover" in refused.stderr.lower(), refused.stderr[-2000:]
    assert digest() == before
    # put it back as it was, for the tests after this one
    sh(cluster, "lab1", "mv /root/guard/* /var/lib/mfs/ && systemctl start moosefs-master")
    deadline = time.monotonic() + 60
    while not mfs.health(MASTER_IP).reachable:  # the master loads its metadata before it listens
        assert time.monotonic() < deadline, "the master did not come back after its metadata was restored"
        time.sleep(1)


def test_a_disk_holding_a_filesystem_is_not_formatted(cluster):
    """A chunk disk that already holds someone's filesystem stays as it is without consent."""
    site = SITE.read_text()
    try:
        # give lab3 a second chunk disk, formatted by "someone else" beforehand
        SITE.write_text(site.replace("chunk_disks: [{serial: lab3-chunk1}]",
                                     "chunk_disks: [{serial: lab3-chunk1}, {serial: lab3-chunk2}]"))
        loaded = sitefile.load(SITE)
        lab.kill_node(loaded, "lab3")  # a new disk needs the node started again
        lab.up(loaded)
        sh(loaded, "lab3", "mkfs.ext4 -q -L precious /dev/disk/by-id/virtio-lab3-chunk2")
        result = deploy("--limit", "lab3")
        assert result.returncode == 1
        assert "lab3-chunk2" in result.stderr and "--format-disk" in result.stderr, result.stderr[-2000:]
        label = sh(loaded, "lab3", "blkid -o value -s LABEL /dev/disk/by-id/virtio-lab3-chunk2").stdout.strip()
        assert label == "precious"
    finally:
        SITE.write_text(site)
