"""The smoke test's guest image (installer/testimage.py), built from Debian's packages and booted
here under qemu (TCG) as OpenNebula would boot it: the image as the first disk, a context CD
beside it. The guest must set the address the context gives and say so on its serial port."""

from __future__ import annotations

import subprocess
import time

from installer import testimage

CONTEXT = """ETH0_IP='10.0.2.15'
ETH0_MASK='255.255.255.0'
ETH0_GATEWAY='10.0.2.2'
ETH0_MAC='02:00:0a:00:02:0f'
NETWORK='YES'
ONEHCI_DISK_MB='8'
"""


def test_the_image_is_built_once_and_small(tmp_path):
    image = testimage.ensure(say=lambda line: None)
    built = image.stat().st_mtime
    assert testimage.ensure(say=lambda line: None) == image and image.stat().st_mtime == built  # from the cache
    assert image.stat().st_size < 40 * 2**20
    assert image.read_bytes()[510:512] == b"\x55\xaa"  # an MBR: the BIOS boots it as a disk


def test_the_guest_boots_reads_its_context_reports_its_address_and_checks_its_disk(tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(testimage.ensure(say=lambda line: None).read_bytes())
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx/context.sh").write_text(CONTEXT)
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(tmp_path / "context.iso"), "-V", "CONTEXT",
                    "-J", "-R", str(tmp_path / "ctx")], check=True, capture_output=True)
    data = tmp_path / "data.img"
    data.write_bytes(bytes(8 * 2**20))  # the data disk: the size ONEHCI_DISK_MB names
    serial = tmp_path / "serial.log"
    # restrict=on: the guest's NIC reaches nothing, not even this machine
    qemu = subprocess.Popen(["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-display", "none", "-no-reboot",
                             "-drive", f"file={image},format=raw,if=ide",
                             "-drive", f"file={tmp_path / 'context.iso'},media=cdrom,if=ide,index=1",
                             "-drive", f"file={data},format=raw,if=virtio",
                             "-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0,mac=02:00:0a:00:02:0f",
                             "-serial", f"file:{serial}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    def serial_until(word: str) -> str:
        started = time.monotonic()
        while word not in (text := serial.read_text(errors="replace") if serial.exists() else ""):
            assert qemu.poll() is None, qemu.stderr.read()
            assert time.monotonic() - started < 90, text[-2000:]
            time.sleep(0.5)
        return text

    try:
        started = time.monotonic()
        text = serial_until("disk 3 ")
        up = time.monotonic() - started
        written = data.read_bytes()
        # the disk changed under the guest (as a storage that lost data would): the guest says so
        with open(data, "r+b") as disk:
            disk.seek(2**20)
            disk.write(bytes(2**20))
        after = serial_until("BAD")
    finally:
        qemu.kill()
        qemu.wait()
    assert "onehci-smoke: up 10.0.2.15/24 on eth0 (02:00:0a:00:02:0f)" in text, text[-2000:]
    assert "onehci-smoke: alive 2 10.0.2.15" in text
    # three rounds written and read back through the guest's own disk, nothing changed
    assert "onehci-smoke: disk 3 ok 3 MiB" in text and "BAD" not in text, text[-2000:]
    mib = [written[n * 2**20:(n + 1) * 2**20] for n in range(8)]
    assert all(m != bytes(2**20) for m in mib[1:4]) and mib[0] == mib[6] == mib[7] == bytes(2**20)  # rounds 1-3
    assert any(line.startswith("onehci-smoke: disk ") and " BAD: MiB 1 of /dev/vd" in line
               for line in after.splitlines()), after[-2000:]
    print(f"guest up and 3 disk rounds in {up:.1f} s")
