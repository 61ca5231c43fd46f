"""A qemu VM for boot-chain tests: network boot first, serial console logged to a file.

    with QemuVM(workdir, mac="52:54:00:73:00:50", tap="onehci-bt0t0", firmware="uefi") as vm:
        vm.wait_for(r"Linux version", timeout=240)
        print(vm.elapsed(), vm.log_path)

Always TCG (KVM hangs guest kernels on these machines). No display: everything the
firmware, iPXE, pxelinux/GRUB and the kernel (console=ttyS0) print goes to `log_path`.
Firmware:
  bios             SeaBIOS, told to use COM1 as its console (fw_cfg etc/sercon-port): iPXE
                   and pxelinux output reaches the serial log too
  uefi             OVMF_CODE_4M.fd + a private copy of OVMF_VARS_4M.fd
  uefi-secureboot  OVMF_CODE_4M.secboot.fd (needs SMM) + a private copy of OVMF_VARS_4M.ms.fd
                   (Microsoft keys enrolled, Secure Boot on)
NIC option ROM (nic_rom): "ipxe" = qemu's default iPXE ROM; "none" = no ROM. "auto" picks iPXE for
SeaBIOS (it has no network stack of its own) and for e1000 under OVMF (OVMF has no e1000 driver),
and none for virtio-net under OVMF, so OVMF's own PXE stack boots as on real UEFI hardware.
Seen here: OVMF runs the unsigned iPXE ROM even with Secure Boot on, but shim loaded through
iPXE fetches grubx64.efi from its own directory and rejects it ("Malformed binary after
Attribute Certificate Table"): with e1000 under UEFI, OVMF's own PXE over iPXE's driver
succeeds only on the second boot option, ~30 s later, and with Secure Boot the VM stops on an error.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from installer.waiting import Pending, wait_until

OVMF = Path("/usr/share/OVMF")
FIRMWARES = {
    "bios": None,
    "uefi": ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
    "uefi-secureboot": ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"),
}
NICS = ("virtio-net-pci", "e1000")
ANSI = re.compile(r"\x1b(\[[0-9;?=]*[A-Za-z]|c)")


class VMError(AssertionError):
    """The VM died or a wait timed out; the message ends with the tail of the serial log."""


class QemuVM:
    def __init__(self, workdir: Path | str, *, mac: str, tap: str, firmware: str = "bios",
                 nic: str = "virtio-net-pci", nic_rom: str = "auto", disk_size: str | None = None,
                 disk_serial: str | None = None,
                 memory_mb: int = 1024, name: str = "vm", extra_args: tuple[str, ...] = (),
                 disks: tuple[tuple[Path, str], ...] = ()):
        """disk_size ("1G", "512M") adds a blank raw disk, second in the boot order; DISKS, more raw
        disks (path, serial) that exist already, never booted from."""
        if firmware not in FIRMWARES:
            raise ValueError(f"firmware must be one of {sorted(FIRMWARES)}, not {firmware!r}")
        if nic not in NICS:
            raise ValueError(f"nic must be one of {NICS}, not {nic!r}")
        if nic_rom == "auto":  # OVMF drives virtio-net itself
            nic_rom = "none" if firmware != "bios" and nic == "virtio-net-pci" else "ipxe"
        if nic_rom not in ("ipxe", "none"):
            raise ValueError(f"nic_rom must be auto, ipxe or none, not {nic_rom!r}")
        self.workdir = Path(workdir)
        self.mac, self.tap, self.firmware, self.nic, self.nic_rom = mac.lower(), tap, firmware, nic, nic_rom
        self.disk_size, self.memory_mb, self.name = disk_size, memory_mb, name
        self.disk_serial = disk_serial  # shows in the guest as /dev/disk/by-id/virtio-<serial>
        self.extra_args = tuple(extra_args)
        self.disks = tuple(disks)
        self.log_path = self.workdir / f"{name}.serial.log"
        self.stderr_path = self.workdir / f"{name}.qemu.log"
        self.disk_path = self.workdir / f"{name}.disk.raw" if disk_size else None
        self.proc: subprocess.Popen | None = None
        self.started_at: float | None = None  # time.monotonic() at start

    # --- lifecycle -----------------------------------------------------------

    def command(self) -> list[str]:
        machine = "q35,smm=on" if self.firmware == "uefi-secureboot" else "q35"
        cmd = ["qemu-system-x86_64", "-name", self.name, "-accel", "tcg", "-machine", machine,
               "-m", str(self.memory_mb), "-display", "none", "-vga", "none", "-monitor", "none",
               "-chardev", f"file,id=serial0,path={self.log_path}", "-serial", "chardev:serial0",
               "-no-user-config", "-nodefaults"]
        if self.firmware == "bios":  # SeaBIOS console (and int10 output) on COM1; qemu warns the
            # name lacks "opt/" (harmless: SeaBIOS reads exactly etc/sercon-port)
            cmd += ["-fw_cfg", f"name=etc/sercon-port,file={self.sercon_path}"]
        else:
            code, _ = FIRMWARES[self.firmware]
            if self.firmware == "uefi-secureboot":
                cmd += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
            cmd += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF / code}",
                    "-drive", f"if=pflash,format=raw,unit=1,file={self.vars_path}"]
        # qemu's own default romfile (Debian's iPXE, efi-*.rom) works; naming it explicitly (by path
        # or by name) made SeaBIOS skip it (seen with qemu 7.2), so "ipxe" leaves romfile alone.
        rom = ",romfile=" if self.nic_rom == "none" else ""
        cmd += ["-netdev", f"tap,id=net0,ifname={self.tap},script=no,downscript=no",
                "-device", f"{self.nic},netdev=net0,mac={self.mac},bootindex=0{rom}"]
        if self.disk_path:
            cmd += ["-drive", f"if=none,id=disk0,format=raw,file={self.disk_path}",
                    "-device", "virtio-blk-pci,drive=disk0,bootindex=1"
                    + (f",serial={self.disk_serial}" if self.disk_serial else "")]
        for number, (path, serial) in enumerate(self.disks, 1):
            cmd += ["-drive", f"if=none,id=disk{number},format=raw,file={path}",
                    "-device", f"virtio-blk-pci,drive=disk{number},serial={serial}"]
        return cmd + list(self.extra_args)

    @property
    def vars_path(self) -> Path:
        return self.workdir / f"{self.name}.OVMF_VARS.fd"

    @property
    def sercon_path(self) -> Path:
        return self.workdir / f"{self.name}.sercon-port"

    def start(self) -> "QemuVM":
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.firmware == "bios":
            self.sercon_path.write_bytes((0x3F8).to_bytes(2, "little"))
        else:
            shutil.copyfile(OVMF / FIRMWARES[self.firmware][1], self.vars_path)
        if self.disk_path and not self.disk_path.exists():
            with open(self.disk_path, "wb") as f:
                f.truncate(_size_bytes(self.disk_size))
        self.log_path.write_bytes(b"")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=subprocess.STDOUT)
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """Kill this VM's qemu (by its PID only) and wait for it."""
        if not self.running():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> "QemuVM":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- observing -------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at if self.started_at else 0.0

    def serial(self, clean: bool = False) -> str:
        """The serial log so far; clean=True drops terminal escapes and carriage returns."""
        try:
            text = self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
        return ANSI.sub("", text).replace("\r", "") if clean else text

    def wait_for(self, pattern: str, timeout: float, start: int = 0, clean: bool = True,
                 interval: float = 0.25) -> re.Match:
        """Wait until `pattern` (regex) appears in the serial log (cleaned, see serial()) at or
        after offset `start`. Returns the match (match.end() is a good `start` for the next
        wait); raises VMError on timeout or if qemu exits first. GRUB wraps lines at 80 columns."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.serial(clean)
            m = rx.search(text, start)
            if m:
                return m
            if not self.running():
                raise VMError(f"{self.name}: qemu exited ({self._exit()}) before {pattern!r}\n{self._tail()}")
            if time.monotonic() > deadline:
                raise VMError(f"{self.name}: no {pattern!r} on the serial console after {timeout:.0f} s\n{self._tail()}")
            time.sleep(interval)

    def wait_ssh(self, ip: str, timeout: float) -> None:
        """Wait until IP answers on port 22 (the installed system is up); VMError, with the console's
        last lines, when qemu exits first or the time runs out."""
        def answers():
            if not self.running():
                raise VMError(f"{self.name}: qemu exited ({self._exit()}) before SSH answered\n{self._tail(25)}")
            with socket.socket() as sock:
                sock.settimeout(2)
                return sock.connect_ex((ip, 22)) == 0 or Pending("no SSH yet")

        wait_until(answers, timeout=timeout, every=2, timed_out=lambda why: (
            f"{self.name}: {why} on {ip} after {timeout:.0f} s; its console:\n{self._tail(25)}"))

    def _exit(self) -> str:
        err = self.stderr_path.read_text(errors="replace").strip() if self.stderr_path.exists() else ""
        return f"exit {self.proc.returncode}" + (f": {err.splitlines()[-1]}" if err else "")

    def _tail(self, lines: int = 15) -> str:
        return "\n".join("    | " + line for line in self.serial(clean=True).splitlines()[-lines:])


def _size_bytes(size: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(size[:-1]) * units[size[-1].upper()] if size[-1].upper() in units else int(size)
