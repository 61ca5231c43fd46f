"""A real 3-node lab from profiles/lab.yml: nspawn nodes booted with systemd, reached over
SSH with the lab key, chunk disks as loop devices, apt through apt-cacher-ng, OpenNebula's
packages (built from its source) in the lab's signed repository, each node in cgroups of its own
that libvirt can write; a second `up` changes nothing; `down` leaves nothing behind and can run
twice.

Needs root and the packages of scripts/apt-packages.txt; a missing one fails the tests.
The lab is built once for the module (the base image is cached in /var/cache/onehci/lab)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from installer import lab, sitefile
from installer.errors import OnehciError
from installer.lab import base, net
from installer.siteinit import profile_site
from tests.lab.processes import our_processes

pytestmark = pytest.mark.slow

SITE = profile_site("lab")  # the shipped profile, its state under /var/lib/onehci/profiles/lab
NODES = ["lab1", "lab2", "lab3"]
BRIDGE = "onehci-lab0"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def loaded():
    lab.check_host()  # not root or a tool missing: every test here fails with the reason
    return sitefile.load(SITE)


@pytest.fixture(scope="module")
def running(loaded):
    lab.down(loaded)  # leftovers of an interrupted run
    cold = not base.path().exists()
    started = time.monotonic()
    first = lab.up(loaded, say=print)
    TIMINGS["lab up (base image built)" if cold else "lab up (base image cached)"] = time.monotonic() - started
    yield first
    lab.down(loaded)
    print(" ".join(f"{name}: {seconds:.1f} s;" for name, seconds in TIMINGS.items()), file=sys.stderr)


def _onehci(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "installer", *args], capture_output=True, text=True, timeout=300)


def _links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {link["ifname"] for link in json.loads(out)}


def test_bridge_address_used_by_something_else_is_refused(loaded):
    lab.down(loaded)
    dummy = "onehci-lt0"
    subprocess.run(["ip", "link", "add", dummy, "type", "bridge"], check=True)  # no dummy module here
    try:
        subprocess.run(["ip", "addr", "add", "10.71.0.1/24", "dev", dummy], check=True)
        with pytest.raises(OnehciError, match=f"10.71.0.1 is already in use on this host by {dummy}, "
                                              f"not by the lab bridge {BRIDGE}"):
            lab.up(loaded)
    finally:
        subprocess.run(["ip", "link", "del", dummy], check=True)
    assert BRIDGE not in _links()
    assert not any(net.netns_exists(f"onehci-{n}") for n in NODES)


def test_every_node_runs_and_answers_ssh(running):
    assert [n.hostname for n in running.nodes] == NODES
    assert set(running.started) >= {*NODES, "apt-cacher-ng", f"bridge {BRIDGE}", "OpenNebula repository"}
    for node in running.nodes:
        assert node.running and node.ssh, node


def test_nodes_install_opennebula_from_the_labs_signed_repository(loaded, running):
    """What the opennebula_repo role writes on a site, by hand here: apt checks the signature."""
    assert running.opennebula_repo == "http://10.71.0.1:8633/" and running.opennebula_version == "7.0.2-1~onehci1"
    script = ("python3 -c \"import urllib.request as u; open('/tmp/one.asc', 'wb').write(u.urlopen("
              "'http://10.71.0.1:8633/repo.key').read())\" && echo 'deb [signed-by=/tmp/one.asc] "
              "http://10.71.0.1:8633/ stable opennebula' > /etc/apt/sources.list.d/t.list && "
              "apt-get -o Acquire::http::Proxy::10.71.0.1=DIRECT update 2>&1 | tail -3; "
              "apt-cache policy opennebula-node-kvm; rm /etc/apt/sources.list.d/t.list")
    proc = lab.node_exec(loaded, "lab2", ["sh", "-c", script])
    assert "Candidate: 7.0.2-1~onehci1" in proc.stdout and "NO_PUBKEY" not in proc.stdout, proc.stdout


def test_libvirt_in_a_node_writes_cgroups_of_its_own(loaded, running):
    """OpenNebula gives every VM CPU shares: libvirt must be able to make cgroups in the node."""
    for node in ("lab1", "lab3"):
        proc = lab.node_exec(loaded, node, ["sh", "-c", "mkdir /sys/fs/cgroup/cpu/onehci-probe && "
                                            "cat /sys/fs/cgroup/cpu/onehci-probe/cpu.shares && "
                                            "rmdir /sys/fs/cgroup/cpu/onehci-probe"])
        assert (proc.returncode, proc.stdout.strip()) == (0, "1024"), proc.stderr
    assert Path("/sys/fs/cgroup/cpu/onehci/lab1").is_dir()  # on this machine: the node's own

def test_ssh_as_root_with_the_lab_key(loaded, running):
    key = lab.lab_ssh_key(loaded)
    assert key.stat().st_mode & 0o777 == 0o600
    for node in running.nodes:
        proc = subprocess.run(lab.ssh_argv(loaded, node.ip, "id -u; hostname; ip -4 -o addr show dev eth0; "
                                           "ip route show default"),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        uid, hostname, addr, route = proc.stdout.splitlines()
        assert (uid, hostname) == ("0", node.hostname)
        assert f" {node.ip}/24 " in addr
        assert route.startswith("default via 10.71.0.1 ")
    # the site's own key is installed too (a technician's laptop reaches the nodes)
    keys = lab.node_exec(loaded, "lab1", ["cat", "/root/.ssh/authorized_keys"]).stdout
    assert "tech@academy.example" in keys and "onehci-lab@lab" in keys


def test_chunk_disk_by_id_link_is_a_real_block_device(loaded, running):
    for node in running.nodes:
        link = f"/dev/disk/by-id/virtio-{node.hostname}-chunk1"
        assert node.disks == {link: node.disks[link]}
        proc = lab.node_exec(loaded, node.hostname, ["sh", "-ec", f"test -b {link}; readlink -f {link}"])
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == node.disks[link]
        # the loop device is backed by this node's sparse disk file
        backing = Path(f"/sys/block/{Path(node.disks[link]).name}/loop/backing_file").read_text().strip()
        assert backing == str(lab.lab_dir(loaded) / node.hostname / "disks" / "chunk0.img")


def test_apt_goes_through_apt_cacher_ng(loaded, running):
    conf = lab.node_exec(loaded, "lab2", ["cat", "/etc/apt/apt.conf.d/00onehci-proxy"]).stdout
    assert conf == 'Acquire::http::Proxy "http://10.71.0.1:3142/";\n'
    proc = lab.node_exec(loaded, "lab2", ["apt-get", "update"], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = lab.lab_dir(loaded) / "run" / "apt-cacher-ng-logs" / "apt-cacher.log"
    assert "|10.71.0.12|debrep/dists/bookworm" in log.read_text()


def test_status_and_shell_commands(running):
    proc = _onehci("lab", "status", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert [(n["hostname"], n["ip"], n["running"], n["ssh"]) for n in shown["nodes"]] == \
        [(n.hostname, n.ip, True, True) for n in running.nodes]
    proc = _onehci("lab", "shell", "lab3", "--", "cat", "/etc/hostname")
    assert (proc.returncode, proc.stdout) == (0, "lab3\n"), proc.stderr
    proc = _onehci("lab", "shell", "lab3", "--", "false")
    assert proc.returncode == 1


def test_second_up_changes_nothing(loaded, running):
    state_file = lab.lab_dir(loaded) / "lab.json"
    before = state_file.read_bytes()
    proc = _onehci("lab", "up", "--json")
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    assert again["started"] == []
    assert [(n["pid"], n["leader"]) for n in again["nodes"]] == [(n.pid, n.leader) for n in running.nodes]
    assert state_file.read_bytes() == before
    assert "nothing changed" in proc.stderr


def test_a_killed_node_comes_back_with_its_data(loaded, running):
    # a chunk disk formatted and listed in fstab by UUID, as the chunkserver role does
    lab.node_exec(loaded, "lab3", ["sh", "-ec", "echo kept > /root/marker; "
                                   "disk=/dev/disk/by-id/virtio-lab3-chunk1; mkfs.xfs -q -f $disk; "
                                   "uuid=$(blkid -s UUID -o value $disk); "
                                   "echo UUID=$uuid /srv/chunk xfs defaults 0 2 >> /etc/fstab; "
                                   "mkdir -p /srv/chunk; mount /srv/chunk; echo on-disk > /srv/chunk/marker"],
                  check=True)
    old = next(n for n in running.nodes if n.hostname == "lab3")
    lab.kill_node(loaded, "lab3")
    assert our_processes({old.pid, old.leader}, "--machine=lab3") == []
    assert [n.running for n in lab.status(loaded, check_ssh=False).nodes] == [True, True, False]
    started = time.monotonic()
    back = lab.up(loaded)
    TIMINGS["one node restart"] = time.monotonic() - started
    assert back.started == ["lab3"]
    assert all(n.running and n.ssh for n in back.nodes)
    assert lab.node_exec(loaded, "lab3", ["cat", "/root/marker", "/srv/chunk/marker"]).stdout == "kept\non-disk\n"


def test_down_leaves_nothing_behind(loaded, running):
    directory = lab.lab_dir(loaded)
    recorded = json.loads((directory / "lab.json").read_text())
    pids = {recorded["aptcache"]["pid"]} | {rec[k]["pid"] for rec in recorded["nodes"].values()
                                            for k in ("nspawn", "leader")}
    loops = [dev for rec in recorded["nodes"].values() for dev in rec["disks"].values()]
    assert len(loops) == 3 and our_processes(pids, str(directory))

    started = time.monotonic()
    removed = lab.down(loaded)
    TIMINGS["lab down"] = time.monotonic() - started
    assert {f"node {n}" for n in NODES} <= set(removed)

    assert not any(net.netns_exists(f"onehci-{n}") for n in NODES)
    assert not _links() & {BRIDGE, "vl-lab1", "vl-lab2", "vl-lab3"}
    assert str(directory) not in Path("/proc/mounts").read_text()
    losetup = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                             capture_output=True, text=True, check=True).stdout
    assert str(directory) not in losetup
    assert our_processes(pids, str(directory)) == []
    assert not directory.exists()
    # kept: the base image cache and the lab key
    assert (base.path() / "etc/os-release").exists()
    assert lab.lab_ssh_key(loaded).exists()

    assert not Path("/sys/fs/cgroup/cpu/onehci").exists()  # the nodes' cgroups
    assert subprocess.run(["ss", "-ltn", "sport = :8633"], capture_output=True, text=True).stdout.count("\n") <= 1
    assert lab.down(loaded) == []  # twice is fine
    proc = _onehci("lab", "down")
    assert (proc.returncode, proc.stdout) == (0, "nothing to remove: the lab is down\n"), proc.stderr
