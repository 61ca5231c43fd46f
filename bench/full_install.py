"""A whole network install, end to end, on a site with a real Debian mirror:

    .venv/bin/python bench/full_install.py --mirror http://mirror.example.org/debian [--firmware uefi]

One qemu VM (TCG) on a private bridge network-boots from `onehci pxe serve`, installs Debian 12
through apt-cacher-ng on the bootstrap address, calls back, reboots, is sent to its local disk
and reaches a login prompt. Prints the time of each milestone. Needs root and what
scripts/setup.sh installs; the mirror must serve the installer's .udeb files (the package
registry reachable from the development machines does not, so this was not run there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from installer.lab import net  # noqa: E402
from tests.bootchain.qemu import QemuVM  # noqa: E402
from tests.bootchain.test_boot_chain import ADDRESS, BRIDGE, NODES, Server, _site_text  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", required=True, help="Debian mirror URL (with its .udeb files)")
    parser.add_argument("--firmware", choices=["bios", "uefi", "uefi-secureboot"], default="bios")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds for the install (TCG is slow)")
    args = parser.parse_args()
    host = "bt-bios" if args.firmware == "bios" else "bt-uefi"
    mac, _ip, _ = NODES[host]
    workdir = Path(tempfile.mkdtemp(prefix="onehci-full-install-", dir="/var/tmp"))
    os.chmod(workdir, 0o755)
    site = workdir / "site.yml"
    site.write_text(_site_text().replace("mirror: http://deb.debian.org/debian", f"mirror: {args.mirror}"))
    net.create_bridge(BRIDGE, f"{ADDRESS}/24")
    net.create_tap("onehci-fi0", BRIDGE)
    server = None
    try:
        subprocess.run([sys.executable, "-m", "installer", "pxe", "build", "--out", str(workdir / "pxe"), str(site)],
                       check=True)
        server = Server(site)
        server.wait_event(None, "serving", timeout=60)
        start = time.monotonic()
        milestones = [("preseed", "preseed", 600), ("partitioning", "install", 1800), ("installed", "installed", 0),
                      ("local-boot", "local-boot", 900)]
        with QemuVM(workdir / "vm", mac=mac, tap="onehci-fi0", firmware=args.firmware, name=host,
                    disk_size="8G", disk_serial=f"{host}-os", memory_mb=2048) as vm:
            for label, kind, limit in milestones:
                contains = "partitioning" if label == "partitioning" else ""
                server.wait_event(host, kind, contains, timeout=limit or args.timeout)
                print(f"{time.monotonic() - start:7.0f} s  {label}", flush=True)
            vm.wait_for(r"login:", timeout=900)
            print(f"{time.monotonic() - start:7.0f} s  login prompt of the installed system", flush=True)
        return 0
    finally:
        if server:
            server.stop()
        net.delete_tap("onehci-fi0")
        net.delete_bridge(BRIDGE)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
