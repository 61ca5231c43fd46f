"""Blank disk to running node: the image install (bootstrap.install: image) for real.

`onehci image build` makes the site's image and installer environment, `onehci pxe serve` serves
them on a private bridge with no mirror at all (apt_proxy: false, no route out), and qemu VMs (TCG)
with blank disks install themselves: a BIOS node and a UEFI node with Secure Boot on (Microsoft's
keys enrolled), each then booting its own disk to an SSH login with the site's hostname, address,
keys, password hash, locale, keyboard and time zone, its filesystems in fstab by UUID. A chunk disk beside the OS disk keeps every byte. Then a second install after
`pxe arm`, and beside it one whose callback the boot server refuses (the node armed again meanwhile): it
stops instead of rebooting, and stays armed. Nodes whose OS disk is wrong (another serial, a
chunk disk, too small) stop with one line and touch nothing; a node that cannot get the image stops with
one line and its chunk disk untouched, and so does one whose network to the boot server goes while its
image streams. Needs root, qemu, ovmf, dnsmasq, debootstrap: scripts/setup.sh
installs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from installer.image import file_sha256
from installer.lab import net
from tests.conftest import REPO
from installer.passwords import sha512_crypt
from installer.resources import profiles
from tests.bootchain.pxeserve import serving
from tests.bootchain.qemu import QemuVM

BRIDGE = "onehci-bi0"
ADDRESS = "10.85.1.1"
# hostname: (mac, ip, boot, firmware the VM starts with)
NODES = {
    "bi-bios": ("52:54:00:85:01:11", "10.85.1.11", "bios", "bios"),
    "bi-uefi": ("52:54:00:85:01:12", "10.85.1.12", "uefi", "uefi-secureboot"),
}
# nodes whose install must stop: the first three before touching any disk (their OS disk is wrong),
# the last after partitioning its OS disk (the boot server does not serve the image)
BAD = {
    "bi-noserial": ("52:54:00:85:01:21", "10.85.1.21", "os_disk serial bi-noserial-os not found"),
    "bi-chunkos": ("52:54:00:85:01:22", "10.85.1.22", "holds MooseFS chunks (label onehci-mfs)"),
    "bi-small": ("52:54:00:85:01:23", "10.85.1.23", "has 1024 MiB, the system needs"),
    "bi-noimage": ("52:54:00:85:01:24", "10.85.1.24", "could not download or unpack the image"),
}
# a node whose network to the boot server's HTTP port is cut while its image streams
CUT = ("bi-cut", "52:54:00:85:01:25", "10.85.1.25")
STALL_SECONDS = 60  # installenv/scripts/onehci: nothing written for this long stops the install
PASSWORD_HASH = sha512_crypt("image-install-test")
TIMINGS: dict[str, float] = {}
ARTIFACTS = Path(os.environ.get("ONEHCI_TEST_ARTIFACTS", REPO / "tests" / "artifacts")) / "image-install"


def _site_text(public_key: str) -> str:
    text = profiles()["lab"].read_text()
    text = text.replace("10.71.0.", "10.85.1.").replace("10.72.0.", "10.86.1.")
    text = text.replace("interface: onehci-lab0", f"interface: {BRIDGE}\n  console: ttyS0,115200n8")
    text = text.replace("apt_proxy: true", "apt_proxy: false")  # no mirror on the nodes' network
    head, access = text[:text.index("access:")], text[text.index("storage:"):text.index("nodes:")]
    nodes = ["nodes:"]
    entries = [(h, mac, ip, boot) for h, (mac, ip, boot, _) in NODES.items()]
    entries += [(h, mac, ip, "bios") for h, (mac, ip, _) in BAD.items()]
    entries.append((*CUT, "bios"))
    for number, (host, mac, ip, boot) in enumerate(entries):
        roles = "[frontend, mfs_master, kvm, mfs_chunkserver, mfs_metalogger]" if number == 0 else \
            "[kvm, mfs_chunkserver, mfs_metalogger]"
        nodes.append(f"  - hostname: {host}\n    mac: {mac}\n    ip: {ip}\n    boot: {boot}\n    roles: {roles}\n"
                     f"    os_disk: {{serial: {host}-os}}\n    chunk_disks: [{{serial: {host}-c1}}]")
    return (head + f"access:\n  ssh_authorized_keys:\n    - {public_key}\n  root_password_hash: '{PASSWORD_HASH}'\n\n"
            + access + "\n".join(nodes) + "\n")


def _onehci(site: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, "ONEHCI_STATE_DIR": str(site.parent / "state")}
    return subprocess.run([sys.executable, "-m", "installer", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def image_site():
    for tool in ("qemu-system-x86_64", "dnsmasq", "debootstrap", "ssh", "iptables"):
        assert shutil.which(tool) or Path("/usr/sbin", tool).exists(), f"{tool} is missing: run scripts/setup.sh"
    assert os.geteuid() == 0, "the image install tests need root"
    workdir = Path(tempfile.mkdtemp(prefix="onehci-imageinstall-", dir="/var/tmp"))
    os.chmod(workdir, 0o755)
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "image-test", "-f", str(key)], check=True)
    site = workdir / "site.yml"
    site.write_text(_site_text(key.with_suffix(".pub").read_text().strip()))
    started = time.monotonic()
    built = _onehci(site, "image", "build", "--json", str(site))
    assert built.returncode == 0, built.stderr
    TIMINGS["image build (0 when cached)"] = time.monotonic() - started if json.loads(built.stdout)["built_now"] else 0
    build = _onehci(site, "pxe", "build", "--out", str(workdir / "pxe"), str(site))
    assert build.returncode == 0, build.stderr
    net.create_bridge(BRIDGE, f"{ADDRESS}/24")
    taps: list[str] = []
    try:
        yield site, workdir, key, taps
    finally:
        for tap in taps:
            net.delete_tap(tap)
        net.delete_bridge(BRIDGE)
        # kept after the run: each VM's console and what the boot server saw
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        ARTIFACTS.mkdir(parents=True)
        for kept in [*(workdir / "vms").glob("*.serial.log"), *(workdir / "state/logs").glob("*")]:
            shutil.copy(kept, ARTIFACTS)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def server(image_site):
    with serving(image_site[0]) as srv:
        yield srv


def _vm(image_site, host: str, mac: str, firmware: str, disk_size: str = "8G", serial: str | None = None,
        disks: tuple = ()) -> QemuVM:
    _, workdir, _, taps = image_site
    tap = f"onehci-bi{len(taps) + 1}"
    net.create_tap(tap, BRIDGE)
    taps.append(tap)
    return QemuVM(workdir / "vms", mac=mac, tap=tap, firmware=firmware, name=host, disk_size=disk_size,
                  disk_serial=serial or f"{host}-os", memory_mb=1024, disks=disks)


def _chunk_disk(path: Path) -> str:
    """A small disk formatted as the chunkserver role formats one (its label), with a file on it;
    returns the sha256 of all its bytes."""
    with open(path, "wb") as fh:
        fh.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "onehci-mfs", str(path)], check=True)
    subprocess.run(["debugfs", "-w", "-R", "mkdir chunks", str(path)], check=True, capture_output=True)
    return file_sha256(path)


def ssh(key: Path, ip: str, command: str, timeout: float = 60) -> str:
    proc = subprocess.run(["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                           "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
                           f"root@{ip}", command], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"ssh {ip} {command!r}: exit {proc.returncode}: {proc.stderr.strip()}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(image_site, server):
    """The BIOS and the Secure Boot node installed at once (one core each), then booted from their
    own disks and answering SSH."""
    _, workdir, key, _ = image_site
    mark = len(server.events)
    chunks = {}
    with contextlib.ExitStack() as stack:
        vms = {}
        for host, (mac, ip, _, firmware) in NODES.items():
            chunk = workdir / f"{host}-c1.raw"
            chunks[host] = (chunk, _chunk_disk(chunk))
            vms[host] = stack.enter_context(_vm(image_site, host, mac, firmware, disks=((chunk, f"{host}-c1"),)))
        started = time.monotonic()
        for host, vm in vms.items():
            server.wait_event(host, "installed", timeout=1500, after=mark)
            TIMINGS[f"{NODES[host][3]}: power-on to installed"] = time.monotonic() - started
        for host, vm in vms.items():
            vm.wait_ssh(NODES[host][1], timeout=600)
            TIMINGS[f"{NODES[host][3]}: power-on to SSH on the installed system"] = time.monotonic() - started
        print("image install timings (both at once):", {k: round(v) for k, v in TIMINGS.items()})
        yield vms, chunks, mark


@pytest.mark.parametrize("host", list(NODES))
def test_a_blank_node_installs_and_boots_its_own_disk(image_site, server, installed, host):
    _, workdir, key, _ = image_site
    vms, _, mark = installed
    mac, ip, boot, firmware = NODES[host]
    seen = [e for e in server.events[mark:] if e["node"] == host]
    kinds = [e["kind"] for e in seen]
    # the installer environment fetched its settings and the image, and said every step
    assert "settings" in kinds and "image" in kinds, kinds
    said = " | ".join(e["detail"] for e in seen if e["kind"] == "install")
    for step in (f"os_disk serial {host}-os is /dev/vda", "image written and checked", "boot loader installed",
                 "install complete"):
        assert step in said, said
    # the progress counts the image's own blocks: never more than the image
    progress = [re.search(r"image: (-?\d+) of (\d+) MiB written", e["detail"]) for e in seen if e["kind"] == "install"]
    assert all(0 <= int(p[1]) <= int(p[2]) for p in progress if p), said
    assert not [e for e in server.events[mark:] if e["kind"] in ("preseed", "mirror", "install-stopped")]
    # booted from its own disk: the network entry said local boot after the callback
    assert "local-boot" in kinds[kinds.index("installed"):]
    assert ssh(key, ip, "hostname").strip() == host
    assert ssh(key, ip, "hostname -f").strip() == f"{host}.lab.onehci.test"
    assert f"inet {ip}/24" in ssh(key, ip, "ip -4 -o addr show")
    assert ssh(key, ip, "findmnt -n -o SOURCE /").strip() == "/dev/vda2"
    assert f"root:{PASSWORD_HASH}:" in ssh(key, ip, "cat /etc/shadow")
    assert ssh(key, ip, "cat /etc/timezone").strip() == "Europe/Paris"
    assert "LANG=fr_FR.UTF-8" in ssh(key, ip, "cat /etc/default/locale")
    assert 'XKBLAYOUT="fr"' in ssh(key, ip, "cat /etc/default/keyboard")
    # fstab names the filesystems by UUID, and the UUIDs are those of the disk the system booted from
    fstab = {f[1]: f[0] for f in (line.split() for line in ssh(key, ip, "cat /etc/fstab").splitlines())
             if f and not f[0].startswith("#")}
    assert set(fstab) == ({"/", "/boot/efi"} if boot == "uefi" else {"/"}), fstab
    for mountpoint, source in fstab.items():
        assert source == "UUID=" + ssh(key, ip, f"findmnt -n -o UUID {mountpoint}").strip(), (mountpoint, fstab)
    assert ssh(key, ip, "systemctl is-system-running --wait || true").strip() in ("running", "degraded")
    if boot == "uefi":
        # Secure Boot was on for the whole chain: firmware -> shim -> GRUB -> the kernel on the disk
        assert "secureboot: Secure boot enabled" in ssh(key, ip, "dmesg")
        assert ssh(key, ip, "test -f /boot/efi/EFI/debian/shimx64.efi && echo yes").strip() == "yes"
    else:
        assert ssh(key, ip, "test -d /sys/firmware/efi || echo bios").strip() == "bios"


def test_chunk_disks_keep_every_byte(installed):
    _, chunks, _ = installed
    for host, (path, before) in chunks.items():
        assert file_sha256(path) == before, f"{host}'s chunk disk changed"


def test_install_settings_go_to_no_one_else(image_site, server, installed):
    site = image_site[0]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{ADDRESS}:8080/install/bi-bios.conf", timeout=10)
    assert refused.value.code == 403
    states = json.loads(_onehci(site, "pxe", "state", "--json", str(site)).stdout)
    assert {r["hostname"]: r["state"] for r in states if r["hostname"] in NODES} == dict.fromkeys(NODES, "installed")


def test_a_second_install_after_pxe_arm(image_site, server, installed):
    """Both nodes armed and rebooted from their running systems at once. bi-bios installs again to an
    SSH login. bi-uefi is armed once more while it installs, so the token in the settings it holds is
    spent: the boot server refuses its callback, and it stops rather than reboot (its network entry
    would install it again), still armed; its next boot would install it as bi-bios's did."""
    site, _, key, _ = image_site
    vms = installed[0]
    ip = NODES["bi-bios"][1]
    ssh(key, ip, "touch /root/before-the-reinstall")
    for host in NODES:
        armed = _onehci(site, "pxe", "arm", host, str(site))
        assert armed.returncode == 0, armed.stderr
    mark = len(server.events)
    started = time.monotonic()
    for host in NODES:
        subprocess.run(["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        "-o", "LogLevel=ERROR", f"root@{NODES[host][1]}", "systemctl reboot"], capture_output=True,
                       timeout=60)
    server.wait_event("bi-uefi", "settings", timeout=600, after=mark)
    rearmed = _onehci(site, "pxe", "arm", "bi-uefi", str(site))
    assert rearmed.returncode == 0, rearmed.stderr

    server.wait_event("bi-bios", "settings", timeout=600, after=mark)
    server.wait_event("bi-bios", "installed", timeout=1200, after=mark)
    vms["bi-bios"].wait_ssh(ip, timeout=600)
    TIMINGS["bios: reinstall, reboot to SSH (beside the refused UEFI install)"] = time.monotonic() - started
    assert ssh(key, ip, "ls /root/before-the-reinstall 2>/dev/null || echo gone").strip() == "gone"
    assert ssh(key, ip, "hostname").strip() == "bi-bios"

    refused = server.wait_event("bi-uefi", "callback-refused", timeout=1200, after=mark)
    assert "wrong or spent token" in refused["detail"], refused
    reason = "did not take the install callback"
    server.wait_event("bi-uefi", "install-stopped", reason, timeout=120, after=mark)
    vms["bi-uefi"].wait_for(f"onehci: install stopped: .*{reason}", timeout=60)
    TIMINGS["uefi: reinstall to its refused callback"] = time.monotonic() - started
    print("image install timings:", {k: round(v) for k, v in TIMINGS.items()})
    assert not [e for e in server.events[mark:] if e["node"] == "bi-uefi" and e["kind"] in ("installed", "local-boot")]
    states = json.loads(_onehci(site, "pxe", "state", "--json", str(site)).stdout)
    assert {r["hostname"]: r["state"] for r in states if r["hostname"] in NODES} == {
        "bi-bios": "installed", "bi-uefi": "install"}
    for host, (path, before) in installed[1].items():  # the reinstalls left the chunk disks alone too
        assert file_sha256(path) == before, f"{host}'s chunk disk changed"


def test_a_wrong_os_disk_stops_the_install_and_touches_nothing(image_site, server):
    """Four nodes at once: its serial on no disk, a chunk disk named as its OS disk, a disk too small,
    and a right disk while the boot server does not serve the image (a 404, as after a lost file)."""
    site, workdir, _, _ = image_site
    image = workdir / "pxe" / "http" / "image" / "root.tar.zst"
    mark = len(server.events)
    with contextlib.ExitStack() as stack:
        disks, vms = {}, {}
        image.rename(image.with_name("root.tar.zst.away"))
        stack.callback(lambda: image.with_name("root.tar.zst.away").rename(image))
        for host, (mac, _, _) in BAD.items():
            if host == "bi-noserial":
                vm = _vm(image_site, host, mac, "bios", disk_size="8G", serial="someone-else")
            elif host == "bi-chunkos":
                chunk = workdir / f"{host}-os.raw"
                _chunk_disk(chunk)
                vm = _vm(image_site, host, mac, "bios", disk_size=None, disks=((chunk, f"{host}-os"),))
            elif host == "bi-noimage":
                chunk = workdir / f"{host}-c1.raw"
                _chunk_disk(chunk)
                vm = _vm(image_site, host, mac, "bios", disk_size="8G", disks=((chunk, f"{host}-c1"),))
            else:
                vm = _vm(image_site, host, mac, "bios", disk_size="1G")
            vms[host] = stack.enter_context(vm)
            # every disk of the first three; only the chunk disk of the last (its OS disk is partitioned)
            disks[host] = [p for p in [vm.disk_path if host != "bi-noimage" else None, *(d for d, _ in vm.disks)]
                           if p]
        before = {host: [file_sha256(p) for p in paths] for host, paths in disks.items()}
        for host, (_, _, reason) in BAD.items():
            stopped = server.wait_event(host, "install-stopped", reason, timeout=900, after=mark)
            assert ("no disk was touched" in stopped["detail"]) == (host != "bi-noimage"), stopped
            vms[host].wait_for(r"onehci: install stopped: .*" + reason.split(" (")[0][:30], timeout=60)
        for host, paths in disks.items():
            assert [file_sha256(p) for p in paths] == before[host], f"{host}: a disk changed"
    assert image.is_file()
    assert server.wait_event("bi-noimage", "http-missing", "/image/root.tar.zst", timeout=1, after=mark)
    states = json.loads(_onehci(site, "pxe", "state", "--json", str(site)).stdout)
    assert {r["hostname"]: r["state"] for r in states if r["hostname"] in BAD} == dict.fromkeys(BAD, "install")


def test_a_network_cut_while_the_image_streams_stops_the_install(image_site, server):
    """The boot server's HTTP port unreachable from the node (packets dropped both ways, as when a
    link or a switch goes) once its image started: busybox's wget would wait for ever, so the
    installer stops once nothing more has come for STALL_SECONDS, says why, and the node stays armed."""
    site = image_site[0]
    host, mac, ip = CUT
    tag = ("-m", "comment", "--comment", "onehci-test-cut")
    cut = [("INPUT", "-s", ip, "-p", "tcp", "--dport", "8080", *tag, "-j", "DROP"),
           ("OUTPUT", "-d", ip, "-p", "tcp", "--sport", "8080", *tag, "-j", "DROP")]
    for rule in cut:  # left by a run that was killed: it would cut this node from the start
        while subprocess.run(["iptables", "-w", "-D", *rule], capture_output=True).returncode == 0:
            pass
    mark = len(server.events)
    with _vm(image_site, host, mac, "bios") as vm, contextlib.ExitStack() as rules:
        server.wait_event(host, "image", "sending", timeout=900, after=mark)
        for rule in cut:
            subprocess.run(["iptables", "-w", "-I", *rule], check=True)
            rules.callback(subprocess.run, ["iptables", "-w", "-D", *rule], capture_output=True)
        cut_at = time.monotonic()
        reason = f"the image download stalled: nothing written from http://{ADDRESS}:8080/image/root.tar.zst"
        stopped = server.wait_event(host, "install-stopped", reason, timeout=STALL_SECONDS + 120, after=mark)
        waited = time.monotonic() - cut_at
        TIMINGS["network cut to the install stopped"] = waited
        # the watcher looks every 10 s: its last sample with progress may come just before the cut
        assert STALL_SECONDS - 10 <= waited <= STALL_SECONDS + 60, waited
        assert f"for {STALL_SECONDS} s" in stopped["detail"], stopped
        vm.wait_for(r"onehci: install stopped: the image download stalled", timeout=60)
        assert not [e for e in server.events[mark:] if e["node"] == host and e["kind"] in ("installed", "local-boot")]
    states = json.loads(_onehci(site, "pxe", "state", "--json", str(site)).stdout)
    assert {r["hostname"]: r["state"] for r in states if r["hostname"] == host} == {host: "install"}
