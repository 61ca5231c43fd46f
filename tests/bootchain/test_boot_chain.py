"""The boot chain, for real: `onehci pxe serve` on a bridge with no uplink, qemu VMs (TCG)
network-booting from it with BIOS (SeaBIOS) and UEFI (OVMF, signed shim -> GRUB), the Debian installer
(bootstrap.install: debian-installer) as far as these machines allow. Secure Boot is proven to the end
by the image install (tests/bootchain/test_image_install.py: shim, GRUB and the installed kernel).

Asserted from what the server saw (its JSON events: dnsmasq's DHCP/TFTP log, the HTTP
requests, the installer's syslog, apt-cacher-ng's log), and from the serial console.
Needs root, qemu-system-x86, ovmf, dnsmasq, apt-cacher-ng and the netboot package:
scripts/setup.sh installs them; a missing one fails the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from installer.lab import net
from installer.resources import profiles
from tests.bootchain.pxeserve import serving
from tests.bootchain.qemu import QemuVM

BRIDGE = "onehci-bc0"
ADDRESS = "10.73.1.1"
NODES = {  # hostname: (mac, ip, boot)
    "bt-bios": ("52:54:00:73:01:11", "10.73.1.11", "bios"),
    "bt-uefi": ("52:54:00:73:01:12", "10.73.1.12", "uefi"),
}
STRANGER_MAC = "52:54:00:73:01:99"
TIMINGS: dict[str, float] = {}


def _site_text() -> str:
    text = profiles()["lab"].read_text()
    text = text.replace("10.71.0.", "10.73.1.").replace("10.72.0.", "10.74.1.")
    text = text.replace("interface: onehci-lab0", f"interface: {BRIDGE}\n  console: ttyS0,115200n8\n"
                        "  install: debian-installer")
    head = text[:text.index("nodes:")]
    nodes = ["nodes:"]
    roles = ["[frontend, mfs_master, kvm, mfs_chunkserver, mfs_metalogger]", "[kvm, mfs_chunkserver, mfs_metalogger]"]
    for (host, (mac, ip, boot)), role in zip(NODES.items(), roles):
        nodes.append(f"  - hostname: {host}\n    mac: {mac}\n    ip: {ip}\n    boot: {boot}\n    roles: {role}\n"
                     f"    os_disk: {{serial: {host}-os}}\n    chunk_disks: [{{serial: {host}-c1}}]")
    return head + "\n".join(nodes) + "\n"


@pytest.fixture(scope="module")
def boot_site():
    """A site on a private bridge, its tree built where dnsmasq (user nobody) can read it."""
    for tool in ("qemu-system-x86_64", "apt-cacher-ng", "dnsmasq"):
        assert shutil.which(tool) or Path("/usr/sbin", tool).exists(), f"{tool} is missing: run scripts/setup.sh"
    assert os.geteuid() == 0, "the boot chain tests need root"
    workdir = Path(tempfile.mkdtemp(prefix="onehci-bootchain-", dir="/var/tmp"))
    os.chmod(workdir, 0o755)
    site = workdir / "site.yml"
    site.write_text(_site_text())
    net.create_bridge(BRIDGE, f"{ADDRESS}/24")
    taps = []
    try:
        yield site, workdir, taps
    finally:
        for tap in taps:
            net.delete_tap(tap)
        net.delete_bridge(BRIDGE)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def server(boot_site):
    site, workdir, _ = boot_site
    build = subprocess.run([sys.executable, "-m", "installer", "pxe", "build", "--out", str(workdir / "pxe"), str(site)],
                           capture_output=True, text=True, env={**os.environ, "ONEHCI_STATE_DIR": str(workdir / "state")})
    assert build.returncode == 0, build.stderr
    with serving(site) as srv:
        yield srv


def _vm(boot_site, name: str, mac: str, firmware: str) -> QemuVM:
    _, workdir, taps = boot_site
    tap = f"onehci-bc{len(taps) + 1}"
    net.create_tap(tap, BRIDGE)
    taps.append(tap)
    host = next(h for h, node in NODES.items() if node[0] == mac) if mac in {n[0] for n in NODES.values()} else name
    return QemuVM(workdir / "vms", mac=mac, tap=tap, firmware=firmware, name=name, disk_size="2G",
                  disk_serial=f"{host}-os")


def _since(event: dict, started: float) -> float:
    return datetime.fromisoformat(event["time"]).timestamp() - started


@pytest.fixture(scope="class")
def powered_on(boot_site, server):
    """Both nodes booting at the same time (one core each), so the slowest wait of the suite is spent once."""
    mark = len(server.events)
    with contextlib.ExitStack() as stack:
        vms = {host: stack.enter_context(_vm(boot_site, host, mac, boot)) for host, (mac, _, boot) in NODES.items()}
        yield vms, mark, time.time()


class TestInstallerBoot:
    @pytest.mark.parametrize("host", ["bt-bios", "bt-uefi"])
    def test_node_boots_into_the_installer_with_its_preseed(self, server, powered_on, host):
        vms, mark, started = powered_on
        vm = vms[host]
        mac, ip, boot = NODES[host]
        server.wait_event(host, "dhcp", f"offer {ip}", timeout=120, after=mark)
        first_file = "pxelinux.0" if boot == "bios" else "bootnetx64.efi"
        server.wait_event(host, "tftp", first_file, timeout=60, after=mark)
        server.wait_event(host, "tftp", "01-" + mac.replace(":", "-") if boot == "bios" else "grub/grub.cfg",
                          timeout=90, after=mark)
        server.wait_event(host, "tftp", "initrd.gz", timeout=120, after=mark)
        preseed = server.wait_event(host, "preseed", f"preseed/{host}.cfg", timeout=200, after=mark)
        TIMINGS[f"{boot} power-on to preseed"] = _since(preseed, started)
        # the installer's own log reaches the server, tied to the node by its planned address
        server.wait_event(host, "install", "installer log arriving", timeout=60, after=mark)
        # as far as this machine allows: the static network from the preseed, then the mirror
        # through apt-cacher-ng on the bootstrap address (the .udeb downloads after it 404 here)
        release = server.wait_event(host, "mirror", "Release", timeout=150, after=mark)
        TIMINGS[f"{boot} power-on to mirror Release"] = _since(release, started)
        # the installer's own screen on the serial console says the same
        vm.wait_for(r"Downloading Release files|Retrieving Release|Checking the Debian archive mirror", timeout=30)
        print("boot timings (both firmwares at once):", {k: round(v) for k, v in TIMINGS.items()})


def test_unknown_machine_gets_no_installer(boot_site, server):
    mark = len(server.events)
    with _vm(boot_site, "stranger", STRANGER_MAC, "bios") as vm:
        server.wait_event(None, "dhcp-ignored", STRANGER_MAC, timeout=120, after=mark)
        vm.wait_for(r"No more network devices|No bootable device|PXE-E|Connection timed out|No configuration methods",
                    timeout=120)
        assert not [e for e in server.events[mark:] if e["kind"] in ("tftp", "preseed", "dhcp")]
        assert "Linux version" not in vm.serial()


@contextlib.contextmanager
def _as_node(host: str):
    """A namespace on the bridge holding HOST's address: the boot server takes a callback only
    from the node's own address, as the installed system sends it."""
    netns, veth = f"onehci-bcn-{host[-4:]}", f"onehci-bcv{host[-4:]}"
    net.create_veth(veth, BRIDGE, netns, cidr=f"{NODES[host][1]}/24")
    try:
        yield netns
    finally:
        net.delete_veth(veth)
        net.delete_netns(netns)


_GET = """
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=10).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
"""


def _http_status(netns: str, url: str) -> int:
    """The HTTP status of a GET of URL made from inside NETNS."""
    proc = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", _GET, url],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


def _callback(server, workdir: Path, host: str) -> None:
    """What the installer's finish script does once the system is on disk."""
    token = json.loads((workdir / "state/boot.json").read_text())[host]["token"]
    with pytest.raises(urllib.error.HTTPError):  # from this machine, not the node: refused
        urllib.request.urlopen(f"http://{ADDRESS}:8080/installed/{host}?token={token}", timeout=10)
    server.wait_event(None, "callback-refused", f"callback for {host} from {ADDRESS}, which is not its address",
                      timeout=10)
    with _as_node(host) as netns:
        assert _http_status(netns, f"http://{ADDRESS}:8080/installed/{host}?token=wrong") == 403
        server.wait_event(host, "callback-refused", timeout=10)
        assert _http_status(netns, f"http://{ADDRESS}:8080/installed/{host}?token={token}") == 200
        server.wait_event(host, "installed", timeout=10)


def test_after_the_callback_a_bios_node_boots_locally(boot_site, server):
    site, workdir, _ = boot_site
    host = "bt-bios"
    mac = NODES[host][0]
    _callback(server, workdir, host)
    entry = (workdir / "pxe/tftp/pxelinux.cfg" / ("01-" + mac.replace(":", "-"))).read_text()
    assert "LOCALBOOT 0" in entry
    mark = len(server.events)
    with _vm(boot_site, f"{host}-again", mac, "bios") as vm:
        server.wait_event(host, "local-boot", timeout=200, after=mark)
        vm.wait_for(r"Booting from local disk", timeout=60)
        assert not [e for e in server.events[mark:] if e["kind"] == "preseed" or "initrd" in e["detail"]]
    state = subprocess.run([sys.executable, "-m", "installer", "pxe", "state", "--json", str(site)],
                           capture_output=True, text=True, env={**os.environ, "ONEHCI_STATE_DIR": str(workdir / "state")})
    assert {r["hostname"]: r["state"] for r in json.loads(state.stdout)}[host] == "installed"


def _disk_with_an_efi_loader(path: Path, netboot: Path) -> None:
    """A GPT disk whose EFI system partition holds a loader at /EFI/debian/shimx64.efi, like an
    installed node's. The loader is a copy of Debian's GRUB: when it runs it greets again."""
    with open(path, "wb") as fh:
        fh.truncate(64 << 20)
    subprocess.run(["/usr/sbin/sfdisk", "-q", str(path)], input="label: gpt\nstart=2048, type=uefi\n",
                   text=True, check=True)
    subprocess.run(["/usr/sbin/mkfs.vfat", "--offset=2048", str(path), str((64 << 20) // 1024 - 1024)],
                   check=True, capture_output=True)
    image = f"{path}@@1M"
    for directory in ("::/EFI", "::/EFI/debian"):
        subprocess.run(["mmd", "-i", image, directory], check=True)
    subprocess.run(["mcopy", "-i", image, str(netboot / "debian-installer/amd64/grubx64.efi"),
                    "::/EFI/debian/shimx64.efi"], check=True)


def test_after_the_callback_a_uefi_node_boots_its_disk(boot_site, server):
    from installer.pxe import DEFAULT_NETBOOT

    _, workdir, _ = boot_site
    host = "bt-uefi"
    _callback(server, workdir, host)
    grub = (workdir / "pxe/tftp/debian-installer/amd64/grub/grub.cfg").read_text()
    assert f"{host} is installed: boot the local disk" in grub
    mark = len(server.events)
    vm = _vm(boot_site, f"{host}-again", NODES[host][0], "uefi")
    vm.workdir.mkdir(parents=True, exist_ok=True)
    _disk_with_an_efi_loader(vm.disk_path, DEFAULT_NETBOOT)
    with vm:
        server.wait_event(host, "local-boot", timeout=200, after=mark)
        chained = vm.wait_for(r"onehci: booting the local disk \(hd0,gpt1\)/EFI/debian/shimx64.efi", timeout=120)
        vm.wait_for(r"Welcome to GRUB!", timeout=120, start=chained.end())  # the disk's loader runs
        assert not [e for e in server.events[mark:] if e["kind"] == "preseed" or "initrd" in e["detail"]]
