"""Blank machines to a cloud, timed: qemu VMs (TCG) with blank disks install themselves from the image
(`bootstrap.install: image`), then `onehci deploy`, `onehci status` and `onehci smoke` run on them,
exactly as on a real site. Only the sources differ from a site on the internet: apt goes through
apt-cacher-ng on the bootstrap address, OpenNebula's packages come from the lab's build of its source,
served on the bootstrap address (STATE/environment.json says so, kind "site", as a site with a local
mirror would write it).

Run as root, with no lab up: .venv/bin/python bench/image_deploy.py [--nodes 1|2] [--keep]
One node: the single-node shape (every role, storage goal 1). Two: a frontend/KVM host and a second
KVM host with a metalogger (goal 2), so that smoke's live migration has somewhere to go.
Prints each phase's time; the VMs' consoles and the state directory are kept in the work directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.local_sources import end_on_signals, new_site, onehci, publish_opennebula, serve  # noqa: E402
from installer.lab import net  # noqa: E402
from tests.bootchain.pxeserve import serving  # noqa: E402
from tests.bootchain.qemu import QemuVM  # noqa: E402

BRIDGE, ADDRESS, PREFIX = "onehci-bd0", "10.87.1.1", 24
NODES = [  # hostname, mac, ip, roles
    ("cl1", "52:54:00:87:01:11", "10.87.1.11", "[frontend, mfs_master, kvm, mfs_chunkserver, mfs_metalogger]"),
    ("cl2", "52:54:00:87:01:12", "10.87.1.12", "[kvm, mfs_chunkserver, mfs_metalogger]"),
]
MEMORY_MB = 3072  # the frontend (oned, FireEdge) and a smoke VM inside


def site_text(public_key: str, count: int) -> str:
    nodes = "\n".join(
        f"  - hostname: {host}\n    mac: {mac}\n    ip: {ip}\n    boot: bios\n    roles: {roles}\n"
        f"    os_disk: {{serial: {host}-os}}\n    chunk_disks: [{{serial: {host}-c1}}]"
        for host, mac, ip, roles in NODES[:count])
    return f"""format: 1
cluster: {{name: imgcloud, domain: img.onehci.test, timezone: Europe/Paris, locale: fr_FR.UTF-8, keyboard: fr}}
networks:
  management: {{cidr: 10.87.1.0/24, gateway: {ADDRESS}, dns: [{ADDRESS}], dhcp: own}}
  vms: {{bridge: br0, cidr: 10.88.1.0/24, first: 10.88.1.10, size: 20, gateway: 10.88.1.1}}
bootstrap:
  address: {ADDRESS}
  interface: {BRIDGE}
  console: ttyS0,115200n8
  mirror: http://deb.debian.org/debian
  apt_proxy: true
access:
  ssh_authorized_keys: ["{public_key}"]
storage: {{goal: {min(count, 2)}}}
opennebula: {{vm_driver: qemu}}
nodes:
{nodes}
"""


def main() -> None:
    end_on_signals()
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, choices=(1, 2), default=1)
    parser.add_argument("--keep", action="store_true", help="leave the VMs running at the end, failed or not (Ctrl-C stops them)")
    args = parser.parse_args()
    nodes = NODES[:args.nodes]
    workdir, key, site = new_site("onehci-bench-imgdeploy-", lambda public_key: site_text(public_key, args.nodes))
    timings: dict[str, float] = {}

    def phase(name: str, started: float) -> None:
        timings[name] = time.monotonic() - started
        print(f"{name}: {timings[name]:.0f} s", flush=True)

    def run(name: str, *argv: str) -> None:
        started = time.monotonic()
        proc = onehci(site, *argv)
        (workdir / f"{name}.log").write_text(proc.stdout)
        phase(name, started)
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed (exit {proc.returncode}), its output in {workdir}/{name}.log:\n"
                             + proc.stdout[-3000:])

    net.create_bridge(BRIDGE, f"{ADDRESS}/{PREFIX}")
    with contextlib.ExitStack() as stack:
        stack.callback(net.delete_bridge, BRIDGE)
        started = time.monotonic()
        repo = publish_opennebula(site, key, ADDRESS)
        phase("OpenNebula repository (build cached or made)", started)
        serve(stack, repo, ADDRESS)
        run("image build", "image", "build")
        run("pxe build", "pxe", "build", "--out", str(workdir / "pxe"))
        server = stack.enter_context(serving(site))
        vms = {}
        for number, (host, mac, ip, _) in enumerate(nodes, 1):
            tap = f"onehci-bd{number}"
            net.create_tap(tap, BRIDGE)
            stack.callback(net.delete_tap, tap)
            chunk = workdir / f"{host}-c1.raw"
            with open(chunk, "wb") as fh:
                fh.truncate(8 << 30)
            vms[host] = stack.enter_context(QemuVM(
                workdir / "vms", mac=mac, tap=tap, firmware="bios", name=host, disk_size="12G",
                disk_serial=f"{host}-os", memory_mb=MEMORY_MB, disks=((chunk, f"{host}-c1"),),
                extra_args=("-smp", "2")))
        started = time.monotonic()
        for host, _, ip, _ in nodes:
            server.wait_event(host, "installed", timeout=1800)
            vms[host].wait_ssh(ip, timeout=900)
        phase("power-on to SSH on the installed systems", started)
        whole = time.monotonic()
        try:
            run("deploy", "deploy")
            run("status", "status")
            run("smoke", "smoke")
            phase("deploy + status + smoke", whole)
        finally:
            (workdir / "timings.json").write_text(json.dumps(timings, indent=1))
            print(json.dumps({k: round(v) for k, v in timings.items()}), flush=True)
            if args.keep:
                print(f"VMs running: ssh -i {key} root@{nodes[0][2]}; Ctrl-C stops them", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)
    print(f"kept (consoles in vms/, logs, state): {workdir}")


if __name__ == "__main__":
    main()
