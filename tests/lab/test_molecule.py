"""The MooseFS roles' Molecule scenarios (roles/moosefs_*/molecule/default): prepare, converge,
a second converge that must change nothing (idempotence), and a verify that checks the real
state, each on the nodes of a 2-node lab of its own.

The lab is tests/lab/molecule-site.yml (mol1, mol2, bridge onehci-mol0, 10.75/10.76), so these
tests run while the "lab" profile is up on the same machine. Molecule creates and destroys no
machine (delegated driver, `managed: false`): the lab is made here and the inventory comes from
`onehci inventory`. Needs root and the packages of scripts/apt-packages.txt; a missing one fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from installer import lab, sitefile
from installer.ansible import strategy_env
from installer.lab import net
from tests.conftest import REPO
from tests.lab.processes import our_processes

pytestmark = pytest.mark.slow

SITE = Path(__file__).with_name("molecule-site.yml")
NODES = ["mol1", "mol2"]
BRIDGE = "onehci-mol0"
BIN = Path(sys.executable).parent
# each scenario's prepare applies what it needs, so any order works; this one makes the later
# prepares find their prerequisites already converged (a fast run without changes)
ROLES = ["moosefs_master", "moosefs_metalogger", "moosefs_chunkserver", "moosefs_client"]
STEPS = ("prepare", "converge", "idempotence", "verify")
TIMINGS: dict[str, float] = {}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def molecule_lab(tmp_path_factory):
    """A fresh Molecule lab from a copy of the site (its state directory is written next to it)
    and its inventory; `lab down` at the end, also when a test fails."""
    lab.check_host()  # not root or a tool missing: every test here fails with the reason
    work = tmp_path_factory.mktemp("molecule")
    shutil.copy(SITE, work / "site.yml")
    loaded = sitefile.load(work / "site.yml")
    lab.down(loaded)  # leftovers of an interrupted run
    try:
        started = time.monotonic()
        lab.up(loaded, say=print)
        TIMINGS["lab up"] = time.monotonic() - started
        shown = subprocess.run([sys.executable, "-m", "installer", "inventory", str(loaded.path)],
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        (work / "inventory.yml").write_text(shown.stdout)
        yield loaded, work
    finally:
        _close_ssh_masters(work / "ssh")
        lab.down(loaded)
        print(" ".join(f"{name}: {seconds:.0f} s;" for name, seconds in TIMINGS.items()), file=sys.stderr)


def _close_ssh_masters(directory: Path) -> None:
    """End the SSH connections Ansible keeps open (ControlPersist), by their control sockets."""
    for socket in directory.glob("*") if directory.is_dir() else []:
        subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={socket}", "molecule-lab"],
                       capture_output=True, timeout=30)


def molecule_test(role: str, work: Path) -> tuple[int, str]:
    env = {**os.environ, **strategy_env(),  # Ansible as `onehci deploy` runs it
           "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "ONEHCI_MOLECULE_INVENTORY": str(work / "inventory.yml"),
           # Molecule's state, Ansible's control sockets: in this run's directory, not in ~
           "MOLECULE_EPHEMERAL_DIRECTORY": str(work / f"molecule-{role}"),
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "ssh"),
           "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    proc = subprocess.run([str(BIN / "molecule"), "test"], cwd=REPO / "roles" / role, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    out = ANSI.sub("", proc.stdout + proc.stderr)
    (work / f"molecule-{role}.log").write_text(out)  # the whole run, for a failure
    return proc.returncode, out


@pytest.mark.parametrize("role", ROLES)
def test_scenario_converges_idempotently_and_verifies(molecule_lab, role):
    _, work = molecule_lab
    started = time.monotonic()
    rc, out = molecule_test(role, work)
    TIMINGS[role] = time.monotonic() - started
    assert rc == 0, f"molecule test of {role} failed (log: {work}/molecule-{role}.log):\n{out[-6000:]}"
    # each step really ran (not skipped or missing); idempotence fails when anything changed
    assert "instances already prepared" not in out, f"{role}: prepare was skipped"
    for step in STEPS:
        # Molecule's recap line; `➜` becomes `>` without colours
        assert re.search(rf"^default (➜|>) {step}: Executed: Successful$", out, re.M), \
            f"{role}: no successful {step}:\n{out[-3000:]}"


def _recorded_pids(record):
    """Every process lab.json records (nodes, apt-cacher-ng, whatever else the lab starts)."""
    if isinstance(record, dict):
        if isinstance(record.get("pid"), int):
            yield record["pid"]
        for value in record.values():
            yield from _recorded_pids(value)
    elif isinstance(record, list):
        for value in record:
            yield from _recorded_pids(value)


def test_lab_down_leaves_nothing(molecule_lab):
    loaded, work = molecule_lab
    directory = lab.lab_dir(loaded)
    pids = set(_recorded_pids(json.loads((directory / "lab.json").read_text())))
    assert len(pids) >= 1 + 2 * len(NODES)  # apt-cacher-ng, each node's nspawn and systemd
    markers = [str(directory), str(work)]  # the nodes' roots, and our SSH connections to them
    _close_ssh_masters(work / "ssh")
    started = time.monotonic()
    removed = lab.down(loaded)
    TIMINGS["lab down"] = time.monotonic() - started
    assert {f"node {n}" for n in NODES} | {f"bridge {BRIDGE}", "apt-cacher-ng"} <= set(removed)

    assert not any(net.netns_exists(f"onehci-{n}") for n in NODES)
    links = {link["ifname"] for link in json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True,
                                                                  text=True, check=True).stdout)}
    assert not links & {BRIDGE, *(f"vl-{n}" for n in NODES)}
    assert str(directory) not in Path("/proc/mounts").read_text()
    losetup = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                             capture_output=True, text=True, check=True).stdout
    assert str(directory) not in losetup
    assert our_processes(pids, *markers) == []
    assert not directory.exists()
    assert lab.down(loaded) == []  # twice is fine
