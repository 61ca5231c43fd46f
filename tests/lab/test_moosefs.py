"""`onehci deploy` on a real 3-node lab of its own (tests/lab/moosefs-site.yml: mfs1 master,
mfs2 and mfs3 metaloggers, all chunkservers): a first deploy killed halfway and rerun, a MooseFS
cluster whose health is read with mfscli from the boot server, data that crosses nodes intact
(also through a chunkserver killed mid-write), a second deploy that changes nothing, and the
guards that keep data safe (metadata, formatted disks)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from installer import lab, mfs, sitefile
from tests.lab.helpers import sh, wait_for

SOURCE = Path(__file__).with_name("moosefs-site.yml")
SITE = Path()  # the private copy the module's lab runs from (fresh_lab)
MASTER_IP = "10.81.0.11"
MOUNT = "/var/lib/one/datastores"


def deploy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "installer", "deploy", "--json", *args, str(SITE)],
                          capture_output=True, text=True)


@dataclass
class Interrupted:
    output: str       # what the killed deploy printed before it died
    survivors: list   # ansible processes of that run still alive afterwards


def deploy_killed_while_installing(loaded) -> Interrupted:
    """Start a first deploy and SIGKILL it, with its whole process group, while dpkg runs on the
    master: the control machine dying in the middle of a package installation."""
    proc = subprocess.Popen([sys.executable, "-m", "installer", "deploy", str(SITE)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "TASK Install the MooseFS master packages" in line:
            break
    assert proc.poll() is None, "".join(lines)[-3000:]
    wait_for("dpkg on mfs1", lambda: sh(loaded, "mfs1", "pgrep -x dpkg", check=False).returncode == 0, 120, 0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run_dir = next(line.split(" in ", 1)[1].strip() for line in lines if line.startswith("ansible run in "))
    # ansible-playbook runs on its own terminal; losing it must take the whole run down
    def alive() -> list:
        found = subprocess.run(["pgrep", "-f", run_dir], capture_output=True, text=True).stdout.split()
        return [pid for pid in found if int(pid) != os.getpid()]
    wait_for("the killed run's ansible processes to end", lambda: not alive(), 30, 0.5)
    return Interrupted("".join(lines), alive())


@pytest.fixture(scope="module")
def fresh_lab(tmp_path_factory):
    global SITE
    SITE = tmp_path_factory.mktemp("moosefs") / "site.yml"
    shutil.copy(SOURCE, SITE)  # the state directory (journal, keys) stays private to this run
    loaded = sitefile.load(SITE)
    lab.down(loaded)
    lab.up(loaded)
    try:
        yield loaded
    finally:
        assert lab.down(loaded) is not None


@pytest.fixture(scope="module")
def killed_first_deploy(fresh_lab) -> Interrupted:
    """The lab's first deploy killed halfway, then a deploy run again to the end."""
    interrupted = deploy_killed_while_installing(fresh_lab)
    rerun = deploy()
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    return interrupted


@pytest.fixture(scope="module")
def cluster(fresh_lab, killed_first_deploy):
    return fresh_lab


def test_a_deploy_killed_halfway_converges_when_rerun(killed_first_deploy):
    out = killed_first_deploy.output
    assert "PLAY MooseFS master" in out and "PLAY MooseFS chunkservers" not in out, out[-2000:]
    assert killed_first_deploy.survivors == []
    # the rerun's success is asserted by the fixture; the second deploy below must then change nothing


def test_mfscli_sees_every_server(cluster):
    health = mfs.health(MASTER_IP)
    assert health.reachable, health.error
    assert sorted(c.ip for c in health.chunkservers) == ["10.81.0.11", "10.81.0.12", "10.81.0.13"]
    assert sorted(health.metaloggers) == ["10.81.0.12", "10.81.0.13"]


def test_data_written_on_one_node_reads_back_on_another(cluster):
    sh(cluster, "mfs2", f"head -c 200M /dev/urandom > {MOUNT}/probe.bin && sync")
    written = sh(cluster, "mfs2", f"sha256sum {MOUNT}/probe.bin").stdout.split()[0]
    read = sh(cluster, "mfs3", f"sha256sum {MOUNT}/probe.bin").stdout.split()[0]
    assert written == read and len(written) == 64
    goal = sh(cluster, "mfs3", f"mfsgetgoal {MOUNT}/probe.bin").stdout
    assert goal.strip().endswith(": 2"), goal  # storage.goal of the site


def test_second_deploy_changes_nothing(cluster):
    again = deploy()
    assert again.returncode == 0, again.stderr[-3000:]
    recap = json.loads(again.stdout)["recap"]
    assert sorted(recap) == ["mfs1", "mfs2", "mfs3"]
    assert {host: r["changed"] for host, r in recap.items()} == {"mfs1": 0, "mfs2": 0, "mfs3": 0}


def test_a_changed_host_key_stops_the_deploy_and_a_new_node_key_is_learned(cluster, tmp_path):
    known_hosts = lab.known_hosts(cluster)
    original = known_hosts.read_text()
    others = [line for line in original.splitlines() if not line.startswith("10.81.0.13,")]
    try:
        # someone else answers at mfs3's address: another key than the one on record
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], check=True)
        public = (tmp_path / "stranger.pub").read_text().split()[:2]
        known_hosts.write_text("\n".join([*others, "10.81.0.13,mfs3 " + " ".join(public)]) + "\n")
        refused = deploy("--limit", "mfs3")
        assert refused.returncode == 1
        assert "host key of mfs3 (10.81.0.13) changed" in refused.stderr, refused.stderr[-2000:]
        assert "ansible run in" not in refused.stderr
        # a node never contacted before: its key is learned and the deploy goes on
        known_hosts.write_text("\n".join(others) + "\n")
        learned = deploy("--limit", "mfs3")
        assert learned.returncode == 0, learned.stderr[-2000:]
        found = subprocess.run(["ssh-keygen", "-F", "10.81.0.13", "-f", str(known_hosts)], capture_output=True)
        assert found.returncode == 0  # (Debian's ssh hashes the names it learns)
    finally:
        known_hosts.write_text(original)


def test_metadata_guard_refuses_and_touches_nothing(cluster):
    """metadata.mfs gone but changelogs present: a fresh metadata file would destroy the
    filesystem, so deploy stops and the master's data directory stays as it was."""
    sh(cluster, "mfs1", "systemctl stop moosefs-master")
    sh(cluster, "mfs1", "cd /var/lib/mfs && ls changelog.* >/dev/null && mkdir -p /root/guard && "
                        "mv metadata.mfs* /root/guard/ 2>/dev/null; ls")
    digest = lambda: sh(cluster, "mfs1", "cd /var/lib/mfs && find . -type f | sort | xargs sha256sum").stdout  # noqa: E731
    before = digest()
    refused = deploy("--limit", "mfs1")
    assert refused.returncode == 1
    assert "recover" in refused.stderr.lower(), refused.stderr[-2000:]
    assert digest() == before
    # put it back as it was, for the tests after this one
    sh(cluster, "mfs1", "mv /root/guard/* /var/lib/mfs/ && systemctl start moosefs-master")
    # the master loads its metadata before it listens
    wait_for("the master to come back after its metadata was restored", lambda: mfs.health(MASTER_IP).reachable, 60)


def test_a_disk_holding_a_filesystem_is_not_formatted(cluster):
    """A chunk disk that already holds someone's filesystem stays as it is without consent."""
    site = SITE.read_text()
    try:
        # give mfs3 a second chunk disk, formatted by "someone else" beforehand
        SITE.write_text(site.replace("chunk_disks: [{serial: mfs3-chunk1}]",
                                     "chunk_disks: [{serial: mfs3-chunk1}, {serial: mfs3-chunk2}]"))
        loaded = sitefile.load(SITE)
        lab.kill_node(loaded, "mfs3")  # a new disk needs the node started again
        lab.up(loaded)
        sh(loaded, "mfs3", "mkfs.ext4 -q -L precious /dev/disk/by-id/virtio-mfs3-chunk2")
        result = deploy("--limit", "mfs3")
        assert result.returncode == 1
        assert "mfs3-chunk2" in result.stderr and "--format-disk" in result.stderr, result.stderr[-2000:]
        label = sh(loaded, "mfs3", "blkid -o value -s LABEL /dev/disk/by-id/virtio-mfs3-chunk2").stdout.strip()
        assert label == "precious"
    finally:
        SITE.write_text(site)


def test_a_chunkserver_killed_mid_write_loses_nothing(cluster):
    """kill -9 of a chunkserver while a file is written: the write completes with every byte,
    and once the chunkserver is back every chunk has `goal` copies again."""
    source = sh(cluster, "mfs2", "head -c 320M /dev/urandom > /root/midwrite.bin && sha256sum /root/midwrite.bin")
    expected = source.stdout.split()[0]
    target = f"{MOUNT}/midwrite.bin"
    writer = subprocess.Popen(lab.nsenter_argv(cluster, "mfs2", ["sh", "-c", f"cp /root/midwrite.bin {target} && sync"]),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    size = lambda: int(sh(cluster, "mfs2", f"stat -c %s {target} 2>/dev/null || echo 0").stdout)  # noqa: E731
    wait_for("the copy to be under way", lambda: size() > 64 << 20 or writer.poll() is not None, 120, 0.2)
    assert writer.poll() is None, "the copy ended before the chunkserver could be killed"
    sh(cluster, "mfs3", "kill -9 $(systemctl show -p MainPID --value moosefs-chunkserver)")
    assert writer.wait(timeout=600) == 0, writer.stdout.read()
    read_back = sh(cluster, "mfs1", f"sha256sum {target}").stdout.split()[0]
    assert read_back == expected
    sh(cluster, "mfs3", "systemctl start moosefs-chunkserver")
    wait_for("mfs3's chunkserver to register again",
             lambda: "10.81.0.13" in [c.ip for c in mfs.health(MASTER_IP).chunkservers], 120)

    def every_chunk_at_goal() -> bool:
        report = sh(cluster, "mfs1", f"mfscheckfile {target}").stdout
        counts = [line for line in report.splitlines() if "copies:" in line or "copy:" in line]
        return bool(counts) and all("with 2 copies" in line for line in counts)
    # the master visits each chunk once per chunk loop (at least 300 s, OPERATING-FACTS)
    wait_for("every chunk of the file to have 2 copies", every_chunk_at_goal, 480, 5)
    health = mfs.health(MASTER_IP)
    assert [health.chunks[k] for k in ("missing", "endangered", "undergoal")] == [0, 0, 0], health.chunks
