"""`pxe serve` refuses to join a network where it would do harm, and leaves nothing running
when stopped with Ctrl-C. Real dnsmasq processes on private bridges; no VM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from installer.lab import net
from tests.bootchain.test_boot_chain import _site_text

BRIDGE = "onehci-pf0"
FOREIGN_NS = "onehci-pf-dhcp"


def _site(workdir: Path, bridge: str, subnet: str) -> Path:
    text = _site_text().replace("onehci-bc0", bridge).replace("10.73.1.", f"10.73.{subnet}.")
    site = workdir / "site.yml"
    site.write_text(text)
    return site


def _serve(site: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "installer", "pxe", "serve", *extra, str(site)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _refused(proc: subprocess.Popen) -> str:
    """stderr of a `pxe serve` expected to refuse; it is stopped (by its PID) if it did not."""
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        raise AssertionError("pxe serve started instead of refusing") from None
    assert proc.returncode == 1, err
    return err


def _our_processes(marker: str) -> list[int]:
    """PIDs whose command line mentions `marker` (a path only this test uses)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture
def workdir():
    assert os.geteuid() == 0, "these tests need root"
    path = Path(tempfile.mkdtemp(prefix="onehci-preflight-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)])


@pytest.fixture
def foreign_dhcp(workdir):
    """Another DHCP server on the bridge: a dnsmasq handing out leases, in its own namespace."""
    net.create_bridge(BRIDGE, "10.73.9.1/24")
    net.create_veth("onehci-pfv0", BRIDGE, FOREIGN_NS, cidr="10.73.9.2/24")
    proc = subprocess.Popen(["ip", "netns", "exec", FOREIGN_NS, "dnsmasq", "--keep-in-foreground", "--port=0",
                             "--interface=eth0", "--bind-interfaces", "--dhcp-range=10.73.9.100,10.73.9.150,1h",
                             f"--dhcp-leasefile={workdir / 'foreign.leases'}", "--pid-file="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while "0.0.0.0%eth0:67" not in subprocess.run(["ip", "netns", "exec", FOREIGN_NS, "ss", "-uln"],
                                                   capture_output=True, text=True).stdout:
        assert time.monotonic() < deadline, "the foreign DHCP server did not start"
        time.sleep(0.1)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(10)
        net.delete_veth("onehci-pfv0")
        net.delete_netns(FOREIGN_NS)
        net.delete_bridge(BRIDGE)


def test_refuses_when_another_dhcp_server_answers(workdir, foreign_dhcp):
    site = _site(workdir, BRIDGE, "9")
    err = _refused(_serve(site))
    assert "another DHCP server answers on onehci-pf0: 10.73.9.2 (offered 10.73.9.1" in err
    assert "Traceback" not in err
    assert not _our_processes(str(workdir / "pxe"))  # nothing was started


def test_force_starts_anyway_and_ctrl_c_stops_every_child(workdir, foreign_dhcp):
    site = _site(workdir, BRIDGE, "9")
    # started as a script's background job is: SIGINT ignored, which Ctrl-C must still stop
    proc = subprocess.Popen([sys.executable, "-m", "installer", "pxe", "serve", "--force", "--json", str(site)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline and not any('"serving"' in line for line in lines):
            lines.append(proc.stdout.readline())
        assert any('"warning"' in line and "another DHCP server" in line for line in lines), lines
        children = (_our_processes(str(workdir / "pxe" / "dnsmasq.conf"))
                    + _our_processes(str(workdir / "state" / "run")))
        assert len(children) == 2, children  # dnsmasq and apt-cacher-ng
        proc.send_signal(signal.SIGINT)  # Ctrl-C, right after "serving" (CI once caught it before the wait)
        assert proc.wait(30) == 0, proc.stderr.read()
        assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    finally:  # a failure above must not leave a DHCP server behind for the next tests
        if proc.poll() is None:
            proc.terminate()  # SIGTERM stops it cleanly too (its children with it)
            proc.communicate(timeout=30)


def test_refuses_when_dhcp_and_tftp_ports_are_taken(workdir):
    net.create_bridge(BRIDGE, "10.73.9.1/24")
    first = None
    try:
        site = _site(workdir, BRIDGE, "9")
        first = _serve(site, "--json")
        while '"serving"' not in (line := first.stdout.readline()):
            assert line, first.stderr.read()
        (workdir / "second").mkdir()
        second = _site(workdir / "second", BRIDGE, "9")
        err = _refused(_serve(second))
        assert "UDP ports 67, 69 already in use on onehci-pf0" in err
    finally:
        if first:
            first.send_signal(signal.SIGINT)
            first.wait(30)
        net.delete_bridge(BRIDGE)


def test_refuses_when_the_bridge_lacks_the_bootstrap_address(workdir):
    net.create_bridge(BRIDGE)
    try:
        err = _refused(_serve(_site(workdir, BRIDGE, "9")))
        assert "onehci-pf0 does not carry the bootstrap address 10.73.9.1" in err
    finally:
        net.delete_bridge(BRIDGE)
