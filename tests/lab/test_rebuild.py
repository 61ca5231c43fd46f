"""`onehci rebuild` and `onehci add-node` on the 3-node cloud test_opennebula.py checked (a private
copy of the lab profile, tests/lab/conftest.py), with OpenNebula built from its source: data
written through the MooseFS mount before every fault is checked after with a tree hash (paths,
sizes, sha256).

- refused for a node whose loss would break the goal: nothing changed;
- a live node (lab2) rebuilt right after data was written, twice: a watcher reading MooseFS's
  chunk matrix every second never sees a chunk with one copy left (the drain proves the copies
  before the node goes);
- a live node (lab3) running a smoke guest that writes its disk, interrupted twice (SIGKILL after
  its drain, Ctrl-C after its reinstall) and run again each time: completes, no done step runs
  again, the reinstall happened once; the guest, moved live, kept beating and reading its disk
  back unchanged the whole time (what the guest itself says on its serial console);
- a node killed first (lab2, container stopped hard): rebuilt, nothing lost;
- a fourth node written in the site joins as chunkserver and monitored host, the others keep
  their addresses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from installer import journal, lab, mfs, one, sitefile, state
from installer.lab import rootfs
from installer.operations import hosts
from installer.plan import make_plan
from tests.lab.conftest import onehci
from tests.lab.helpers import (assert_guest_lived, blank_vm, chunk_watch, deploy_changes_nothing, guest_watch, sh,
                               smoke_guest, tree_hash, vm_state, wait_for, write_data)

LAB4 = """  - hostname: lab4
    mac: 52:54:00:71:00:14
    ip: 10.71.0.14
    boot: bios
    roles: [kvm, mfs_chunkserver]
    os_disk: {serial: lab4-os}
    chunk_disks: [{serial: lab4-chunk1}]
"""
DATA = "/var/lib/one/datastores/rebuild-test"


def history(loaded) -> list[dict]:
    folder = state.state_dir(loaded.path) / "operations" / "history"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*-rebuild-*.json"))]


def step(record: dict, name: str) -> dict:
    return next(s for s in record["steps"] if s["name"] == name)


def host_states(loaded) -> dict[str, int]:
    client = one.client_for(loaded, make_plan(loaded.site))
    return {h.NAME: h.STATE for h in client.hostpool.info().HOST}


def marked(loaded, node: str) -> bool:
    return sh(loaded, node, "grep -c '^\\*' /etc/mfs/mfshdd.cfg || true").stdout.strip() != "0"


def host_key(loaded, node: str) -> str:
    return rootfs.host_key(lab.lab_dir(loaded) / node / "root")


@pytest.fixture(scope="module")
def cloud(lab_cloud):
    """The cloud test_opennebula.py checked (tests/lab/conftest.py), data written on it; down at
    the end, so that the following lab tests have the machine to themselves."""
    loaded = lab_cloud.loaded
    for path in (state.state_dir(loaded.path) / "operations", state.state_dir(loaded.path) / "chunk_marks.json"):
        assert not path.exists(), path  # a private copy: no journal from an earlier run
    wait_for("status green", lambda: onehci("status", lab_cloud.site).returncode == 0, 180, every=3)
    write_data(loaded, "lab1", DATA)
    try:
        yield lab_cloud
    finally:
        lab_cloud.down()  # lab4 too, once added


@pytest.fixture
def data(cloud):
    """The data's tree hash now, as lab1 sees it; checked again by the test."""
    return tree_hash(cloud.loaded, "lab1", DATA)


def test_a_rebuild_that_would_break_the_goal_is_refused_and_changes_nothing(cloud, data):
    sh(cloud.loaded, "lab2", "systemctl stop moosefs-chunkserver")
    try:
        wait_for("the master to see lab2's chunkserver gone",
                 lambda: "10.71.0.12" not in [c.ip for c in mfs.health("10.71.0.11").chunkservers], 60)
        before = (host_states(cloud.loaded), state.read_json(state.state_dir(cloud.path) / "boot.json", {}))
        proc = onehci("rebuild", "lab3", "--yes", cloud.site)
        assert proc.returncode == 1
        message = proc.stderr.strip().splitlines()[-1]
        assert message.startswith("error: lab3 cannot be rebuilt now: lab3 is a chunkserver, and without it 1 "
                                  "chunkserver is connected (lab1), fewer than storage.goal 2"), message
        assert message.endswith("Nothing was changed"), message
        assert (host_states(cloud.loaded), state.read_json(state.state_dir(cloud.path) / "boot.json", {})) == before
        assert not marked(cloud.loaded, "lab3")
        assert journal.current(cloud.path) is None
    finally:
        sh(cloud.loaded, "lab2", "systemctl start moosefs-chunkserver")
    wait_for("status green again", lambda: onehci("status", cloud.site).returncode == 0, 180, every=3)
    assert tree_hash(cloud.loaded, "lab1", DATA) == data


# The drain used to race the master's chunk loop: sometimes right, sometimes not. One round (about 200 s):
# the drain's proof, a chunk loop that started after the mark, is checked every time and is missing whenever
# the drain did not wait for such a loop; a second round only rolled the timing again (docs/performance.md).
RACE_ROUNDS = 1


def test_a_rebuild_right_after_a_write_never_leaves_a_chunk_with_one_copy(cloud, data):
    for round_ in range(RACE_ROUNDS):
        write_data(cloud.loaded, "lab1", f"{DATA}-fresh{round_}", files=20, mib=1)
        fresh = tree_hash(cloud.loaded, "lab1", f"{DATA}-fresh{round_}")
        with chunk_watch("10.71.0.11") as samples:
            proc = onehci("rebuild", "lab2", "--yes", "--json", cloud.site)
        assert proc.returncode == 0, proc.stderr[-3000:]
        unsafe = [s for s in samples if s[1] or s[2]]
        assert not unsafe, f"round {round_}: chunks missing or with one copy (seconds, missing, endangered): {unsafe}"
        assert len(samples) > 30 and samples[-1][0] > 30  # the watcher ran through the whole rebuild
        drain = step(json.loads(proc.stdout), "drain")["result"]
        assert drain["drained"] is True and drain["proof"]["chunk_loop"]["start"] >= drain["marked_at"] - 1
        assert not marked(cloud.loaded, "lab2")
        assert tree_hash(cloud.loaded, "lab2", f"{DATA}-fresh{round_}") == fresh
    assert tree_hash(cloud.loaded, "lab1", DATA) == data
    deploy_changes_nothing(cloud.site, "the rebuild (its drain and undrain went through the chunkserver role)")


def _run_until(loaded, stop_after: str, sig: int) -> None:
    """Start the rebuild of lab3 and kill it with SIG as soon as its journal records STOP_AFTER done."""
    proc = subprocess.Popen([sys.executable, "-m", "installer", "rebuild", "lab3", "--yes", str(loaded.path)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    path = state.state_dir(loaded.path) / "operations" / "current.json"
    try:
        def reached():
            if proc.poll() is not None:
                raise AssertionError(f"the rebuild ended (exit {proc.returncode}) before {stop_after}: "
                                     f"{proc.stderr.read()[-2000:]}")
            found = state.read_json(path, None) if path.exists() else None
            return found and step(found, stop_after)["status"] == "done"

        wait_for(f"the rebuild's {stop_after} step to be done", reached, 600, every=0.05)
        if sig == signal.SIGINT:
            os.kill(proc.pid, sig)  # Ctrl-C reaches the command itself
        else:
            os.killpg(proc.pid, sig)  # a crash: the command and everything it started
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_live_node_rebuilt_through_two_interruptions_loses_nothing_and_repeats_nothing(cloud, data):
    old_key = host_key(cloud.loaded, "lab3")
    client = cloud.client()
    with smoke_guest(cloud.loaded, cloud.site, client, on="lab3") as guest, \
            guest_watch(cloud.loaded, client, guest) as heard:
        wait_for("the guest heard on lab3", lambda: heard and heard[-1].host == "lab3", 60)
        record = _rebuild_interrupted_twice(cloud, old_key)
        finished = heard[-1].disk_round
        wait_for("two disk rounds after the rebuild", lambda: heard[-1].disk_round >= finished + 2, 120)
        vm = guest.vm
        assert step(record, "flush")["result"]["moved"] == [vm]
        assert hosts.vms_on(client, "lab3") == [] and vm in hosts.vms_on(client, "lab1") + hosts.vms_on(client, "lab2")
        assert vm_state(client, vm) == ("ACTIVE", "RUNNING")  # moved running: a live migration
    # the guest itself: beating through the whole rebuild (moved live, never booted again) and every
    # disk round reading back unchanged what it wrote, on MooseFS while lab3 was away
    assert_guest_lived(heard)
    assert {h.host for h in heard} - {"lab3"}, "the guest never left lab3"
    print(f"guest through the rebuild: {heard[-1].seconds:.0f} s watched, beats {heard[0].beat} -> "
          f"{heard[-1].beat}, disk rounds {heard[0].disk_round} -> {heard[-1].disk_round}, "
          f"longest silence {longest_silence(heard):.0f} s")

    assert host_states(cloud.loaded)["lab3"] == one.MONITORED
    assert not marked(cloud.loaded, "lab3")
    assert state.read_json(state.state_dir(cloud.path) / "chunk_marks.json", {}) == {}
    assert onehci("status", cloud.site).returncode == 0
    assert tree_hash(cloud.loaded, "lab3", DATA) == data == tree_hash(cloud.loaded, "lab1", DATA)


def longest_silence(heard) -> float:
    """The longest time between two readings where the guest's heartbeat moved on."""
    changes = [h.seconds for i, h in enumerate(heard) if i == 0 or h.beat > heard[i - 1].beat]
    return max((b - a for a, b in zip(changes, changes[1:])), default=0.0)


def _rebuild_interrupted_twice(cloud, old_key: str) -> dict:
    """The rebuild of lab3 killed after its drain, stopped with Ctrl-C after its reinstall, run
    again to the end; its journal record, checked to have done each step once."""
    # the boot states' lock held here stops the rebuild in its next step (arm) until the kill: the
    # interruption lands after the drain, never in the reinstall
    with state.locked(state.state_dir(cloud.path), "boot"):
        _run_until(cloud, "drain", signal.SIGKILL)
    assert marked(cloud.loaded, "lab3"), "the drain marks lab3's disks for removal"
    after_drain = journal.current(cloud.path)
    assert after_drain["state"] in ("interrupted", "stopped") and after_drain["next"] == "arm", after_drain["where"]

    _run_until(cloud, "reinstall", signal.SIGINT)
    reinstalled_key = host_key(cloud.loaded, "lab3")
    assert reinstalled_key != old_key

    started = time.monotonic()
    proc = onehci("rebuild", "lab3", "--yes", "--json", cloud.site)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"rebuild of lab3 after its reinstall: {time.monotonic() - started:.0f} s")
    assert "continuing the rebuild of lab3" in proc.stderr
    record = json.loads(proc.stdout)
    assert record["state"] == "finished"
    assert host_key(cloud.loaded, "lab3") == reinstalled_key, "the reinstall ran again"
    for name in ("preflight", "disable", "flush", "offline", "drain"):
        assert step(record, name)["attempts"] == 1, (name, step(record, name))
    assert step(record, "reinstall")["attempts"] == 1
    assert [e["event"] for e in record["events"]].count("resumed") == 2
    assert step(record, "drain")["result"]["drained"] is True
    assert step(record, "preflight")["result"]["alive"] is True
    return record


def test_a_dead_node_is_rebuilt_and_nothing_is_lost(cloud, data):
    vm = blank_vm(cloud.loaded, "lab2", "stranded-probe")
    lab.kill_node(cloud.loaded, "lab2")
    started = time.monotonic()
    proc = onehci("rebuild", "lab2", "--yes", "--json", cloud.site)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"rebuild of a dead lab2: {time.monotonic() - started:.0f} s")
    record = json.loads(proc.stdout)
    assert step(record, "preflight")["result"]["alive"] is False
    assert "dead (no answer over SSH)" in proc.stderr
    assert step(record, "drain")["result"]["drained"] is False
    assert vm in step(record, "flush")["result"]["stranded"]  # a dead host's VMs are named, not moved
    assert "onevm recover --recreate" in proc.stderr
    assert all(s["attempts"] == 1 for s in record["steps"])
    assert host_states(cloud.loaded)["lab2"] == one.MONITORED
    assert onehci("status", cloud.site).returncode == 0
    assert tree_hash(cloud.loaded, "lab2", DATA) == data
    assert len(history(cloud)) >= 2 and all(h["state"] == "finished" for h in history(cloud)[-2:])
    deploy_changes_nothing(cloud.site, "the rebuild of a dead node")



def test_a_fourth_node_joins_as_chunkserver_and_monitored_host_and_the_others_keep_their_addresses(cloud, data):
    def addresses():
        plan = json.loads(onehci("plan", "--json", cloud.site).stdout)
        return {n["hostname"]: (n["ip"], n["mac"]) for n in plan["nodes"]}

    before = addresses()
    Path(cloud.site).write_text(Path(cloud.site).read_text() + LAB4)
    refused = onehci("add-node", "lab3", cloud.site)
    assert refused.returncode == 1 and "lab3 was already deployed (at 10.71.0.13)" in refused.stderr
    started = time.monotonic()
    proc = onehci("add-node", "lab4", "--json", cloud.site)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"add-node lab4: {time.monotonic() - started:.0f} s")
    record = json.loads(proc.stdout)
    assert record["state"] == "finished" and all(s["attempts"] == 1 for s in record["steps"])
    after = addresses()
    assert {n: after[n] for n in before} == before and after["lab4"] == ("10.71.0.14", "52:54:00:71:00:14")
    loaded = sitefile.load(cloud.site)
    assert host_states(loaded)["lab4"] == one.MONITORED
    assert "10.71.0.14" in [c.ip for c in mfs.health("10.71.0.11").chunkservers]
    assert onehci("status", cloud.site).returncode == 0
    assert tree_hash(loaded, "lab4", DATA) == data
