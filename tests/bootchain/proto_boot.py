"""Prototype boot chain: dnsmasq (DHCP + TFTP, known MACs only) + a qemu VM on a private bridge.

Not a pytest test. Run as root from the repository root:

    .venv/bin/python -m tests.bootchain.proto_boot bios              # SeaBIOS -> pxelinux -> d-i kernel
    .venv/bin/python -m tests.bootchain.proto_boot uefi              # OVMF -> shim -> GRUB -> d-i kernel
    .venv/bin/python -m tests.bootchain.proto_boot uefi-secureboot
    .venv/bin/python -m tests.bootchain.proto_boot bios --mode localboot0    # LOCALBOOT 0, blank disk
    .venv/bin/python -m tests.bootchain.proto_boot bios --mode localboot-1   # LOCALBOOT -1, blank disk
    .venv/bin/python -m tests.bootchain.proto_boot uefi --mode exit          # GRUB `exit`, blank disk
    .venv/bin/python -m tests.bootchain.proto_boot uefi --mode exit1         # GRUB `exit 1`, blank disk
    .venv/bin/python -m tests.bootchain.proto_boot bios --mode unknown       # a MAC not in dhcp-host

It prints a timeline (seconds from VM start) of the dnsmasq log lines and serial-console
milestones, then the raw dnsmasq log and the serial log tail. Everything lives on bridge
onehci-bt0 (10.73.0.1/24, no uplink); bridge, tap, dnsmasq and qemu are removed at the end,
even on failure. --keep leaves the work directory (logs, TFTP tree) in place.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from installer.lab import net
from tests.bootchain.qemu import QemuVM

NETBOOT = Path("/usr/lib/debian-installer/images/12/amd64/text")
BRIDGE, BRIDGE_CIDR, TAP = "onehci-bt0", "10.73.0.1/24", "onehci-bt0t0"
KNOWN_MAC, KNOWN_IP, UNKNOWN_MAC = "52:54:00:73:00:50", "10.73.0.50", "52:54:00:73:00:99"
DI = "debian-installer/amd64"

# serial-console milestones: name -> regex (matched on the log without terminal escapes)
SERIAL_MARKS = {
    "seabios": r"SeaBIOS \(version",
    "ipxe": r"iPXE \d",
    "ovmf-pxe-v4": r"Start PXE over IPv4",
    "pxelinux": r"PXELINUX \d",
    "onehci-echo": r"onehci: .*",
    "linux-banner": r"Linux version \S+",
    "secureboot-line": r"[Ss]ecure boot \w+",
    "run-init": r"Run /init as init process",
    "boot-failed": r"Boot failed.*|No bootable device.*|Access Denied.*|error: .*|PXE-E\d+.*",
    "bds": r"BdsDxe: .*|Booting from .*|Shell> |UEFI Interactive Shell.*",
}


def dnsmasq_conf(work: Path, tftp: Path, log: Path, ignore_unknown: bool) -> str:
    return "\n".join([
        "port=0",                                   # no DNS
        f"interface={BRIDGE}",
        "bind-interfaces",
        "dhcp-range=10.73.0.0,static",              # only dhcp-host entries get an address
        f"dhcp-host={KNOWN_MAC},{KNOWN_IP}",
        *(["dhcp-ignore=tag:!known"] if ignore_unknown else []),
        f"dhcp-leasefile={work / 'leases'}",
        "dhcp-match=set:efi64,option:client-arch,7",
        "dhcp-match=set:efi64,option:client-arch,9",
        "dhcp-boot=tag:!efi64,pxelinux.0",
        f"dhcp-boot=tag:efi64,{DI}/bootnetx64.efi",
        "enable-tftp",
        f"tftp-root={tftp}",
        "log-dhcp",
        f"log-facility={log}",
        "user=root",                                # the temp TFTP tree is root-only
        "",
    ])


def pxelinux_cfg(mode: str) -> str:
    if mode.startswith("localboot"):
        return f"DEFAULT local\nPROMPT 0\nTIMEOUT 10\nLABEL local\n  LOCALBOOT {mode[len('localboot'):]}\n"
    return ("DEFAULT install\nPROMPT 0\nTIMEOUT 10\nLABEL install\n"
            f"  KERNEL {DI}/linux\n  INITRD {DI}/initrd.gz\n  APPEND console=ttyS0,115200n8 ---\n")


def grub_cfg(mode: str) -> str:
    probe = (
        'echo "onehci: net_default_mac=[${net_default_mac}] net_default_interface=[${net_default_interface}]'
        ' net_default_ip=[${net_default_ip}] net_default_server=[${net_default_server}]"\n'
        'echo "onehci: prefix=[${prefix}] root=[${root}] cmdpath=[${cmdpath}] grub_platform=[${grub_platform}]"\n'
        'echo "onehci: efinet0_mac=[${net_efinet0_mac}] efinet0_boot_file=[${net_efinet0_boot_file}]"\n'
        'source "${prefix}/nodes/${net_default_mac}.cfg"\n'
        'echo "onehci: onehci_node=[${onehci_node}]"\n'
    )
    if mode.startswith("exit"):  # "exit" or "exit1" (exit with status 1)
        cmd = "exit 1" if mode == "exit1" else "exit"
        return probe + f'echo "onehci: calling {cmd}"\n{cmd}\necho "onehci: still in grub after {cmd}"\n'
    return probe + (
        "set timeout=1\nset default=0\n"
        "menuentry 'onehci install' {\n"
        f"    linux /{DI}/linux console=ttyS0,115200n8 ---\n"
        f"    initrd /{DI}/initrd.gz\n"
        "}\n")


class Timeline:
    """Stamps new dnsmasq log lines and first serial matches with seconds since VM start."""

    def __init__(self, dnsmasq_log: Path, vm: QemuVM):
        self.log, self.vm, self.offset = dnsmasq_log, vm, 0
        self.events: list[tuple[float, str, str]] = []
        self.seen: dict[str, float] = {}

    def _add(self, source: str, text: str) -> None:
        t = self.vm.elapsed()
        self.events.append((t, source, text))
        print(f"{t:7.1f}s  {source:8} {text}", flush=True)

    def poll(self) -> None:
        data = self.log.read_bytes() if self.log.exists() else b""
        end = data.rfind(b"\n") + 1
        for line in data[self.offset:end].decode(errors="replace").splitlines():
            if not re.search(r"requested options|sent size|available DHCP subnet|next server", line):
                self._add("dnsmasq", line)
        self.offset = max(self.offset, end)
        serial = self.vm.serial(clean=True)
        for name, rx in SERIAL_MARKS.items():
            for m in re.finditer(rx, serial):
                key = f"{name}:{m.group(0)}" if name in ("onehci-echo", "boot-failed", "bds") else name
                if key not in self.seen:
                    self.seen[key] = self.vm.elapsed()
                    self._add("serial", m.group(0).strip())

    def first(self, source: str, pattern: str) -> float | None:
        return next((t for t, s, text in self.events if s == source and re.search(pattern, text)), None)

    def run_until(self, done, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.vm.running() and not done(self):
            self.poll()
            time.sleep(0.2)
        self.poll()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bootchain.proto_boot")
    ap.add_argument("firmware", choices=["bios", "uefi", "uefi-secureboot"])
    ap.add_argument("--mode", default="install", choices=["install", "localboot0", "localboot-1", "exit", "exit1", "unknown"])
    ap.add_argument("--nic", default="virtio-net-pci", choices=["virtio-net-pci", "e1000"])
    ap.add_argument("--nic-rom", default="auto", choices=["auto", "ipxe", "none"])
    ap.add_argument("--disk", action="store_true", help="attach a blank 1G disk (always for localboot/exit)")
    ap.add_argument("--watch", type=float, default=60,
                    help="seconds to keep watching after the boot loader hands back (unknown: in all)")
    ap.add_argument("--no-ignore", action="store_true", help="leave out dhcp-ignore=tag:!known")
    ap.add_argument("--timeout", type=float, default=230, help="seconds for the whole VM run")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)

    if net.link_exists(BRIDGE):
        raise SystemExit(f"{BRIDGE} already exists: another proto_boot run (or a leftover); not touching it")
    work = Path(tempfile.mkdtemp(prefix="onehci-proto-"))
    tftp, dlog, conf = work / "tftp", work / "dnsmasq.log", work / "dnsmasq.conf"
    mac = UNKNOWN_MAC if args.mode == "unknown" else KNOWN_MAC
    dnsmasq = vm = None
    try:
        net.create_bridge(BRIDGE, BRIDGE_CIDR)
        net.create_tap(TAP, BRIDGE)
        shutil.copytree(NETBOOT, tftp, symlinks=True)
        shutil.copyfile(tftp / DI / "grubx64.efi", tftp / "grubx64.efi")  # shim looks in the TFTP root
        (tftp / DI / "pxelinux.cfg" / ("01-" + mac.replace(":", "-"))).write_text(pxelinux_cfg(args.mode))
        (tftp / DI / "grub" / "grub.cfg").write_text(grub_cfg(args.mode))
        (tftp / DI / "grub" / "nodes").mkdir()
        (tftp / DI / "grub" / "nodes" / f"{mac}.cfg").write_text(
            'echo "onehci: per-MAC file sourced"\nset onehci_node=yes\n')
        conf.write_text(dnsmasq_conf(work, tftp, dlog, ignore_unknown=not args.no_ignore))
        print(f"work dir {work}\n--- dnsmasq.conf\n{conf.read_text()}---", flush=True)

        with open(work / "dnsmasq.stderr", "wb") as err:
            dnsmasq = subprocess.Popen(["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"],
                                       stdin=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 10
        while b"started, version" not in (dlog.read_bytes() if dlog.exists() else b""):
            if dnsmasq.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"dnsmasq did not start: {(work / 'dnsmasq.stderr').read_text()}")
            time.sleep(0.1)

        disk = "1G" if args.disk or args.mode in ("localboot0", "localboot-1", "exit", "exit1") else None
        vm = QemuVM(work, mac=mac, tap=TAP, firmware=args.firmware, nic=args.nic,
                    nic_rom=args.nic_rom, disk_size=disk, name=args.firmware)
        vm.start()
        print(f"qemu pid {vm.pid}: {' '.join(vm.command())}", flush=True)
        tl = Timeline(dlog, vm)
        dlog_start = dlog.stat().st_size
        tl.offset = dlog_start

        if args.mode == "install":
            tl.run_until(lambda t: "run-init" in t.seen, args.timeout)
        elif args.mode == "unknown":
            tl.run_until(lambda t: False, min(args.timeout, max(args.watch, 75)))
        else:  # watch what happens after the boot loader hands back, for a while
            tl.run_until(lambda t: any(k.startswith("onehci-echo:onehci: calling") for k in t.seen)
                         or t.first("dnsmasq", r"sent .*pxelinux\.cfg/01-") is not None, args.timeout)
            tl.run_until(lambda t: False, args.watch)

        print("\n=== summary (seconds from VM start)")
        rows = {
            "DHCPDISCOVER": tl.first("dnsmasq", r"DHCPDISCOVER"),
            "DHCPOFFER": tl.first("dnsmasq", r"DHCPOFFER"),
            "DHCPACK": tl.first("dnsmasq", r"DHCPACK"),
            "boot file sent": tl.first("dnsmasq", r"sent .*(pxelinux\.0|bootnetx64\.efi) to"),
            "grubx64.efi sent": tl.first("dnsmasq", r"sent .*grubx64\.efi to"),
            "pxelinux 01-<mac> sent": tl.first("dnsmasq", r"sent .*pxelinux\.cfg/01-"),
            "grub.cfg sent": tl.first("dnsmasq", r"sent .*grub/grub\.cfg to"),
            "kernel sent": tl.first("dnsmasq", rf"sent .*{DI}/linux to"),
            "initrd sent": tl.first("dnsmasq", r"sent .*initrd\.gz to"),
            "kernel on serial": tl.seen.get("linux-banner"),
        }
        for k, v in rows.items():
            print(f"  {k:24} {'-' if v is None else f'{v:.1f}'}")
        if args.mode == "unknown":
            lines = [text for _, s, text in tl.events if s == "dnsmasq" and UNKNOWN_MAC in text]
            print(f"  lines naming {UNKNOWN_MAC}: {len(lines)}; any OFFER: {any('DHCPOFFER' in l for l in lines)}")
        print("\n=== dnsmasq log (this run)")
        print(dlog.read_bytes()[dlog_start:].decode(errors="replace"))
        print("=== serial log tail")
        print("\n".join(vm.serial(clean=True).splitlines()[-40:]))
        return 0
    finally:
        if vm:
            vm.stop()
        if dnsmasq and dnsmasq.poll() is None:
            dnsmasq.send_signal(signal.SIGTERM)
            try:
                dnsmasq.wait(10)
            except subprocess.TimeoutExpired:
                dnsmasq.kill()
                dnsmasq.wait()
        net.delete_tap(TAP)
        net.delete_bridge(BRIDGE)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
