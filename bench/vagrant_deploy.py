"""The laptop rehearsal to the end, timed: `vagrant up` of a shipped profile's nodes (the project's
Vagrantfile, libvirt, software emulation) -> each installs itself from the image served by `onehci pxe
serve` -> `onehci deploy` -> `onehci status` -> `onehci smoke` (a VM on each host, and one live migration
when there are two hosts or more).

The site is profiles/lab.yml (three nodes, the default) or profiles/single-node.yml (`--profile
single-node`: one node, what two emulated cores can carry) on its own subnet, bridge and ports, with a
gateway that leads nowhere (nothing leaves this machine). As in bench/image_deploy.py, apt goes through
apt-cacher-ng on the bootstrap address and OpenNebula's packages come from the lab's build of its source,
served there (STATE/environment.json, kind "site"): a laptop with internet access needs neither.

Run as root, with no lab up and the Vagrant test not running:
    .venv/bin/python bench/vagrant_deploy.py [--profile lab|single-node]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.local_sources import end_on_signals, new_site, onehci, publish_opennebula, serve  # noqa: E402
from installer import sitefile  # noqa: E402
from installer.plan import make_plan  # noqa: E402
from installer.resources import profiles  # noqa: E402
from tests.bootchain.pxeserve import Server  # noqa: E402
from tests.bootchain.vagrant import gateway_that_leads_nowhere, libvirtd_running, vagrant  # noqa: E402
from tests.lab.helpers import wait_for  # noqa: E402

CLUSTER, BRIDGE, ADDRESS, GATEWAY = "vgd", "onehci-vd0", "10.89.0.1", "10.89.0.254"
PROFILES = ("lab", "single-node")  # the shipped profiles two emulated cores can try
STATUS_PATIENCE, STATUS_EVERY = 600, 30  # seconds `onehci status` is run again until it says healthy
# seconds each status check may take: the emulated nodes answered SSH in 7-13 s once OpenNebula's
# monitoring probes ran on them (status's own 4 s suits servers; docs/opennebula.md)
STATUS_TIMEOUT = 30
PROBE_TIMEOUT = 600  # seconds a host's monitoring probes may run (docs/rehearsal.md)
# six emulated vCPUs on two cores: OpenNebula's probes (Ruby, at nice 0, the VMs' state every 5 s) kept
# the nodes busy while the drivers' disk copies, at OpenNebula's nice 19, never got the CPU (smoke's
# VMs stuck in PROLOG, 2026-12-08); the probes spaced out and the drivers at 0 (docs/rehearsal.md)
PROBE_PERIODS = {"STATE_VM": 60, "MONITOR_VM": 300, "MONITOR_HOST": 300}
DRIVER_NICE = 0
SMOKE_TIMEOUT = 600  # seconds per smoke step: each guest is emulated inside an emulated node
MEMORY_MB = 3072  # every node alike (the Vagrantfile has one size): the frontend and a smoke VM fit
# 2 vCPUs each although the machine has 2 cores: the frontend gets both while the others wait (oned's
# drivers must start in time: docs/performance.md)


def site_text(profile: str, public_key: str) -> str:
    text = profiles()[profile].read_text()
    if profile == "lab":
        text = text.replace("name: lab\n", f"name: {CLUSTER}\n").replace("domain: lab.", f"domain: {CLUSTER}.")
        text = text.replace("10.71.0.", "10.89.0.").replace("10.72.0.", "10.90.0.")
        text = text.replace("52:54:00:71:", "52:54:00:89:").replace("interface: onehci-lab0", "interface: eno1")
    else:
        text = text.replace("name: solo ", f"name: {CLUSTER} ").replace("192.168.30.", "10.89.0.")
        text = text.replace("192.168.31.", "10.90.0.").replace("52:54:00:30:", "52:54:00:89:")
        text = text.replace("address: 10.89.0.5\n", f"address: {ADDRESS}\n")
        # software emulation: the node cannot run KVM guests (the lab profile says the same)
        text = text.replace("\nnodes:", "\nopennebula:\n  vm_driver: qemu\n\nnodes:")
    text = text.replace("gateway: 10.89.0.1\n", f"gateway: {GATEWAY}\n").replace("gateway: 10.89.0.1 ", f"gateway: {GATEWAY} ")
    text = text.replace("dns: [10.89.0.1]", f"dns: [{GATEWAY}]")
    text = re.sub(r"interface: \S+.*", f"interface: {BRIDGE}\n  http_port: 8089\n  syslog_port: 5589", text)
    start = text.index("    - ssh-ed25519", text.index("ssh_authorized_keys:"))
    return text[:start] + f"    - {public_key}" + text[text.index("\n", start):]


def _frontend_diagnostics(key: Path, ip: str) -> str:
    """The hosts as oned lists them and the tail of oned's and the monitor daemon's logs."""
    proc = _ssh(key, ip, "su - oneadmin -c 'onehost list'; echo; tail -n 60 /var/log/one/oned.log; echo; "
                "tail -n 60 /var/log/one/monitor.log", timeout=120)
    return proc.stdout + proc.stderr


def _ssh(key: Path, ip: str, command: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """COMMAND as root on IP with the bench's KEY; the VMs' host keys are new on every run."""
    return subprocess.run(["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
                           "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", f"root@{ip}", command],
                          capture_output=True, text=True, timeout=timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="lab", help="the shipped profile (default: lab)")
    args = parser.parse_args()
    end_on_signals()
    workdir, key, site = new_site("onehci-bench-vagrant-", lambda public_key: site_text(args.profile, public_key))
    plan = make_plan(sitefile.load(site).site)
    nodes = {node.hostname: node.ip for node in plan.nodes}
    timings: dict[str, float] = {}
    began = 0.0  # set at `vagrant up`

    def mark(name: str) -> None:
        timings[name] = time.monotonic() - began
        print(f"{name}: {timings[name]:.0f} s since `vagrant up`", flush=True)

    def run(name: str, *argv: str) -> None:
        proc = onehci(site, *argv)
        (workdir / f"{name}.log").write_text(proc.stdout)
        mark(name)
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed (exit {proc.returncode}), output in {workdir}/{name}.log:\n"
                             + proc.stdout[-3000:])

    def status_until_green() -> None:
        # what a technician does when status is not healthy right after the deploy: look again a little
        # later; every answer is kept
        attempts = itertools.count(1)

        def green() -> bool:
            attempt = next(attempts)
            proc = onehci(site, "status", "--timeout", str(STATUS_TIMEOUT))
            (workdir / f"status-{attempt}.log").write_text(proc.stdout)
            mark(f"status attempt {attempt}: exit {proc.returncode}")
            return proc.returncode == 0

        wait_for(f"a green `onehci status` (each answer in {workdir}/status-N.log)", green, STATUS_PATIENCE,
                 STATUS_EVERY)

    for argv in (("image", "build"), ("pxe", "build", "--out", str(workdir / "pxe"))):
        proc = onehci(site, *argv)
        assert proc.returncode == 0, proc.stdout
    # emulated nodes: OpenNebula's first monitoring round ran over its 90 s probe limit on all three
    repo = publish_opennebula(site, key, ADDRESS, {"opennebula_frontend__monitor_timeout": PROBE_TIMEOUT,
                                                   "opennebula_frontend__probe_periods": PROBE_PERIODS,
                                                   "opennebula_frontend__driver_nice": DRIVER_NICE})

    with contextlib.ExitStack() as stack:
        stack.enter_context(libvirtd_running())
        stack.callback(lambda: print(vagrant(workdir, site, "destroy", "-f").stdout[-500:]))
        began = time.monotonic()
        up = vagrant(workdir, site, "up", background=True, memory_mb=MEMORY_MB, cpus=2, os_disk="12G",
                     chunk_disk="8G")
        stack.callback(lambda: up.poll() is None and (up.terminate(), up.wait(60)))
        plug = stack.enter_context(gateway_that_leads_nowhere(BRIDGE, GATEWAY, "onehci-vgd-gw", "onehci-vdw"))
        wait_for(f"the bridge {BRIDGE} of the libvirt network",
                 lambda: Path(f"/sys/class/net/{BRIDGE}").exists() or up.poll() is not None, 180, 0.5)
        assert up.poll() is None, up.stdout.read()
        plug()
        serve(stack, repo, ADDRESS)  # on the bridge the Vagrantfile made
        server = Server(site)
        stack.callback(server.stop)
        server.wait_event(None, "serving", timeout=60)
        out, _ = up.communicate(timeout=1200)
        (workdir / "vagrant-up.log").write_text(out)
        assert up.returncode == 0, out[-3000:]
        mark("vagrant up returned")
        for host in nodes:
            server.wait_event(host, "installed", timeout=2400)
            mark(f"{host} installed")
        for host, ip in nodes.items():
            wait_for(f"an SSH login on {host}", lambda: _ssh(key, ip, "true").returncode == 0, 900, 3)
        mark("SSH on every installed node")
        try:
            try:
                run("deploy", "deploy")
            except SystemExit as failed:
                # what the frontend saw, read before the VMs go; then what a technician does: deploy again
                (workdir / "frontend-diagnostics.txt").write_text(_frontend_diagnostics(key, plan.opennebula.frontend_ip))
                print(failed, f"\nthe frontend's logs: {workdir}/frontend-diagnostics.txt; deploy again", flush=True)
                run("deploy again", "deploy")
            status_until_green()
            run("smoke", "smoke", "--timeout", str(SMOKE_TIMEOUT))
        finally:
            (workdir / "timings.json").write_text(json.dumps(timings, indent=1))
            print(json.dumps({k: round(v) for k, v in timings.items()}), f"kept in {workdir}", flush=True)


if __name__ == "__main__":
    main()
