"""The whole product path once, from a blank machine: the shipped single-node profile (every role, one
copy) on a qemu VM (TCG, UEFI) whose disks are blank. It installs itself from the image served by
`onehci pxe serve`, boots its own disk, then `onehci deploy` makes it a cloud, `onehci status` says it
is healthy and `onehci smoke` runs a VM on it, as on a real site. Only the sources are local: apt
through apt-cacher-ng on the bootstrap address and OpenNebula's packages from the lab's build of its
source (tests/bootchain/local_sources.py). Needs root, qemu, ovmf, dnsmasq, debootstrap, apt-cacher-ng
and OpenNebula's build dependencies: scripts/setup.sh installs them. About 20 minutes under TCG.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from installer.lab import net
from installer.resources import profiles
from tests.bootchain.local_sources import new_site, publish_opennebula, serve
from tests.bootchain.pxeserve import serving
from tests.bootchain.qemu import QemuVM
from tests.conftest import REPO

BRIDGE, ADDRESS, TAP = "onehci-wp0", "10.93.1.5", "onehci-wp1"
HOST, MAC, IP = "solo1", "52:54:00:93:01:10", "10.93.1.10"
MEMORY_MB = 3072  # oned, FireEdge, MooseFS and the smoke guest in one node
TIMINGS: dict[str, float] = {}
ARTIFACTS = Path(os.environ.get("ONEHCI_TEST_ARTIFACTS", REPO / "tests" / "artifacts")) / "whole-path"


def site_text(public_key: str) -> str:
    """profiles/single-node.yml on the test's bridge and subnets, with the test's key and disks."""
    text = profiles()["single-node"].read_text()
    text = text.replace("192.168.30.", "10.93.1.").replace("192.168.31.", "10.94.1.")
    text = re.sub(r"interface: eno1 .*", f"interface: {BRIDGE}\n  console: ttyS0,115200n8", text)
    text = text.replace("mac: 52:54:00:30:00:01", f"mac: {MAC}")
    text = text.replace("S45PNA0M300001", f"{HOST}-os").replace("[{serial: ZC18A301}, {serial: ZC18B301}]",
                                                                 f"[{{serial: {HOST}-c1}}]")
    start = text.index("    - ssh-ed25519", text.index("ssh_authorized_keys:"))
    text = text[:start] + f"    - {public_key}" + text[text.index("\n", start):]
    # software emulation: the VM cannot run KVM guests
    return text.replace("\nnodes:", "\nopennebula:\n  vm_driver: qemu\n\nnodes:")


def onehci(site: Path, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    started = time.monotonic()
    env = {**os.environ, "ONEHCI_STATE_DIR": str(site.parent / "state")}  # where publish_opennebula wrote
    proc = subprocess.run([sys.executable, "-m", "installer", *args, str(site)], capture_output=True, text=True,
                          env=env, timeout=timeout)
    TIMINGS[args[0]] = time.monotonic() - started
    (site.parent / f"{args[0]}.log").write_text(proc.stdout + proc.stderr)
    return proc


@pytest.fixture(scope="module")
def installed():
    """The blank VM installed from the image and answering SSH on its own disk; the sources served."""
    for tool in ("qemu-system-x86_64", "dnsmasq", "debootstrap", "ssh", "apt-cacher-ng"):
        assert shutil.which(tool) or Path("/usr/sbin", tool).exists(), f"{tool} is missing: run scripts/setup.sh"
    assert os.geteuid() == 0, "the whole-path test needs root"
    workdir, key, site = new_site("onehci-wholepath-", site_text)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        stack.callback(_keep_artifacts, workdir)
        net.create_bridge(BRIDGE, f"{ADDRESS}/24")
        stack.callback(net.delete_bridge, BRIDGE)
        repo = publish_opennebula(site, key, ADDRESS)  # OpenNebula's build: waits for the one under way
        serve(stack, repo, ADDRESS)
        for argv in (("image", "build"), ("pxe", "build", "--out", str(workdir / "pxe"))):
            proc = onehci(site, *argv)
            assert proc.returncode == 0, proc.stderr[-3000:]
        server = stack.enter_context(serving(site))
        net.create_tap(TAP, BRIDGE)
        stack.callback(net.delete_tap, TAP)
        chunk = workdir / f"{HOST}-c1.raw"
        with open(chunk, "wb") as fh:
            fh.truncate(8 << 30)
        vm = stack.enter_context(QemuVM(workdir / "vms", mac=MAC, tap=TAP, firmware="uefi", name=HOST,
                                        disk_size="12G", disk_serial=f"{HOST}-os", memory_mb=MEMORY_MB,
                                        disks=((chunk, f"{HOST}-c1"),), extra_args=("-smp", "2")))
        server.wait_event(HOST, "installed", timeout=1800)
        vm.wait_ssh(IP, timeout=900)
        TIMINGS["power-on to SSH on the installed system"] = vm.elapsed()
        yield site, key
        print("whole path timings (s):", {k: round(v) for k, v in TIMINGS.items()})


def _keep_artifacts(workdir: Path) -> None:
    """The VM's console and every command's output, kept after the run."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    for kept in [*(workdir / "vms").glob("*.serial.log"), *workdir.glob("*.log")]:
        shutil.copy(kept, ARTIFACTS)


def test_deploy_makes_the_installed_node_a_healthy_cloud(installed):
    site, _ = installed
    deploy = onehci(site, "deploy", "--json")
    assert deploy.returncode == 0, (deploy.stdout + deploy.stderr)[-3000:]
    registration = json.loads(deploy.stdout)["registration"]
    hosts = [o for o in registration["objects"] if o["kind"] == "host"]
    assert [h["name"] for h in hosts] == [HOST]
    status = onehci(site, "status", "--json")
    report = json.loads(status.stdout)
    not_green = [c for c in report["checks"] if c["colour"] != "green"]
    assert status.returncode == 0 and report["verdict"] == "healthy" and not not_green, not_green


def test_smoke_runs_a_vm_on_the_cloud_and_leaves_nothing(installed):
    site, _ = installed
    smoke = onehci(site, "smoke", "--json")
    assert smoke.returncode == 0, (smoke.stdout + smoke.stderr)[-3000:]
    result = json.loads(smoke.stdout)
    steps = [s["name"] for s in result["steps"]]
    assert result["ok"] and "guest up" in steps and steps[-1] == "cleanup", result["steps"]
    (guest,) = result["guests"]
    assert guest["host"] == HOST and guest["ip"].startswith("10.94.1.") and guest["up_seconds"] is not None, guest
