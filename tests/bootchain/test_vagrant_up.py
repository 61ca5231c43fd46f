"""`vagrant up` of one node of a site, with Debian's vagrant and vagrant-libvirt and libvirt's qemu driver in
software emulation (KVM guests hang on these machines): the blank VM network-boots from `onehci pxe serve`
on the bridge of the libvirt network the Vagrantfile defines, installs itself from the site's image
(asserted from `pxe serve`'s events) and boots its own disk to an SSH login as the site describes it;
then `vagrant destroy` leaves no domain, volume or network.

Needs root, vagrant, vagrant-libvirt, libvirt-daemon-system, qemu and the netboot package
(scripts/setup.sh installs them); a missing one fails. libvirtd is started here when it is not running
(CI machines run no systemd), and stopped again.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from installer.resources import profiles
from tests.bootchain.pxeserve import Server
from tests.bootchain.vagrant import gateway_that_leads_nowhere, libvirtd_running, vagrant, virsh
from tests.lab.helpers import wait_for

CLUSTER = "vgt"
BRIDGE = "onehci-vg0"
PREFIX = f"onehci-{CLUSTER}-"  # the Vagrantfile's domain prefix
GATEWAY = "10.83.0.254"
GATEWAY_NETNS, GATEWAY_VETH = "onehci-vgt-gw", "onehci-vgw"


def _site_text() -> str:
    # the lab profile on its own subnet and bridge; the gateway and DNS are not the bootstrap address, so
    # the libvirt network is isolated: nothing the installer sends leaves this machine
    text = profiles()["lab"].read_text()
    text = text.replace("name: lab\n", f"name: {CLUSTER}\n").replace("domain: lab.", f"domain: {CLUSTER}.")
    text = text.replace("10.71.0.", "10.83.0.").replace("10.72.0.", "10.84.0.").replace("52:54:00:71:", "52:54:00:83:")
    text = text.replace("gateway: 10.83.0.1 ", f"gateway: {GATEWAY} ").replace("dns: [10.83.0.1]", f"dns: [{GATEWAY}]")
    # its own ports too: another boot server (the boot chain test's) may be running on this machine
    return text.replace("interface: onehci-lab0", f"interface: {BRIDGE}\n  http_port: 8083\n  syslog_port: 5583")


@pytest.fixture(scope="module")
def libvirtd():
    with libvirtd_running():
        yield


@pytest.fixture
def workdir():
    # dnsmasq (user nobody) reads the boot tree: not under a private temporary directory
    path = Path(tempfile.mkdtemp(prefix="onehci-vagrant-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def site(workdir):
    path = workdir / "site.yml"
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vagrant-test", "-f", str(key)], check=True)
    text = _site_text()
    start = text.index("    - ssh-ed25519", text.index("ssh_authorized_keys:"))
    end = text.index("\n", start)
    path.write_text(text[:start] + "    - " + key.with_suffix(".pub").read_text().strip() + text[end:])
    assert not any(_ours().values()), f"left from an earlier run: {_ours()}"
    return path


def _volume_names(pool: str) -> list[str]:
    """libvirt 9.0's `vol-list` has no --name: the first column of its table, below the dashes."""
    virsh("pool-refresh", pool)  # files a crashed run left in the pool's directory count too
    table = virsh("vol-list", pool).splitlines()
    below = next(i for i, line in enumerate(table) if line.startswith("---")) + 1
    return [line.split()[0] for line in table[below:] if line.strip()]


def _ours() -> dict[str, list[str]]:
    """The cluster's domains, volumes and network that libvirt still has."""
    domains = [d for d in virsh("list", "--all", "--name").split() if d.startswith(PREFIX)]
    pools = virsh("pool-list", "--name").split()  # the active ones: an inactive pool cannot be listed
    volumes = [v for pool in pools for v in _volume_names(pool) if v.startswith(PREFIX)]
    networks = [n for n in virsh("net-list", "--all", "--name").split() if n == f"onehci-{CLUSTER}"]
    return {"domains": domains, "volumes": volumes, "networks": networks}


def _assert_lab1_as_the_site_describes_it() -> str:
    xml = virsh("dumpxml", f"{PREFIX}lab1")
    assert "52:54:00:83:00:11" in xml and "<serial>lab1-os</serial>" in xml and "<serial>lab1-chunk1</serial>" in xml
    assert "running" in virsh("domstate", f"{PREFIX}lab1")
    return xml


def _port_open(ip: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((ip, port)) == 0


def _ssh(key: Path, ip: str, command: str) -> str:
    proc = subprocess.run(["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                           "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", f"root@{ip}", command],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _assert_nothing_left(destroy: subprocess.CompletedProcess) -> None:
    assert destroy.returncode == 0, destroy.stdout + destroy.stderr
    assert _ours() == {"domains": [], "volumes": [], "networks": []}
    assert not Path(f"/sys/class/net/{BRIDGE}").exists()


def test_vagrant_up_installs_the_node_from_its_image_and_destroy_leaves_nothing(libvirtd, workdir, site):
    state = {**os.environ, "ONEHCI_STATE_DIR": str(workdir / "state")}
    image = subprocess.run([sys.executable, "-m", "installer", "image", "build", str(site)],
                           capture_output=True, text=True, env=state, timeout=1800)
    assert image.returncode == 0, image.stderr
    build = subprocess.run([sys.executable, "-m", "installer", "pxe", "build", "--out", str(workdir / "pxe"), str(site)],
                           capture_output=True, text=True, env=state)
    assert build.returncode == 0, build.stderr

    started = time.monotonic()
    timings: dict[str, float] = {}
    up = vagrant(workdir, site, "up", "lab1", background=True)
    server = None
    with gateway_that_leads_nowhere(BRIDGE, GATEWAY, GATEWAY_NETNS, GATEWAY_VETH) as plug_gateway:
        try:
            # the Vagrantfile defines the network, then waits for the boot server before the domain starts
            wait_for(f"the bridge {BRIDGE} of the libvirt network",
                     lambda: Path(f"/sys/class/net/{BRIDGE}").exists() or up.poll() is not None, 180, 0.5)
            assert up.poll() is None, up.stdout.read()
            plug_gateway()
            server = Server(site)
            server.wait_event(None, "serving", timeout=60)
            timings["network up, pxe serve started"] = time.monotonic() - started
            out, _ = up.communicate(timeout=600)
            timings["vagrant up returned"] = time.monotonic() - started
            assert up.returncode == 0, out
            assert "waiting for `onehci pxe serve" in out

            xml = _assert_lab1_as_the_site_describes_it()
            assert "type='qemu'" in xml  # software emulation, as asked
            assert f"<source network='onehci-{CLUSTER}'" in xml

            server.wait_event("lab1", "dhcp", "offer 10.83.0.11", timeout=240)
            timings["DHCP offer"] = time.monotonic() - started
            server.wait_event("lab1", "tftp", "pxelinux.0", timeout=90)
            server.wait_event("lab1", "tftp", "onehci/installer.initrd", timeout=180)
            timings["installer environment fetched"] = time.monotonic() - started
            server.wait_event("lab1", "settings", "install/lab1.conf", timeout=300)
            timings["install settings fetched"] = time.monotonic() - started
            server.wait_event("lab1", "installed", timeout=900)
            timings["installed (callback)"] = time.monotonic() - started
            server.wait_event("lab1", "local-boot", timeout=300)
            wait_for("SSH on lab1's installed system", lambda: _port_open("10.83.0.11", 22), 600, 2)
            timings["SSH on the installed system"] = time.monotonic() - started
            assert _ssh(workdir / "id_ed25519", "10.83.0.11", "hostname; findmnt -n -o SOURCE /").split() == \
                ["lab1", "/dev/vda2"]
        finally:
            if up.poll() is None:
                up.terminate()
                up.wait(60)
            destroy = vagrant(workdir, site, "destroy", "-f")
            if server is not None:
                assert server.stop() == 0
    timings["destroyed"] = time.monotonic() - started
    print("vagrant timings (s since `vagrant up`):", {k: round(v) for k, v in timings.items()})
    _assert_nothing_left(destroy)


def test_destroying_one_node_keeps_the_others_and_the_network_for_its_rebuild(libvirtd, workdir, site):
    """The rehearsal of a blank machine in place of a failed one: `vagrant destroy -f lab1 && vagrant up lab1`
    while lab3 runs on. No boot server here (nothing to install): the nodes find no DHCP answer and wait."""
    try:
        up = vagrant(workdir, site, "up", "lab1", "lab3", serve_wait=0)
        assert up.returncode == 0, up.stdout + up.stderr
        assert sorted(_ours()["domains"]) == [f"{PREFIX}lab1", f"{PREFIX}lab3"]

        gone = vagrant(workdir, site, "destroy", "-f", "lab1", serve_wait=0)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        left = _ours()
        assert left["domains"] == [f"{PREFIX}lab3"] and left["networks"] == [f"onehci-{CLUSTER}"]
        assert left["volumes"] and not [v for v in left["volumes"] if v.startswith(f"{PREFIX}lab1")]
        assert "running" in virsh("domstate", f"{PREFIX}lab3")

        again = vagrant(workdir, site, "up", "lab1", serve_wait=0)
        assert again.returncode == 0, again.stdout + again.stderr
        _assert_lab1_as_the_site_describes_it()  # the same machine as far as the site can tell
    finally:
        destroy = vagrant(workdir, site, "destroy", "-f", serve_wait=0)
    _assert_nothing_left(destroy)
