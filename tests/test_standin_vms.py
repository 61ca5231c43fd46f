"""Virtual machines in the lab's OpenNebula stand-in (placement only, no hypervisor), driven
through pyone as onehci drives OpenNebula: allocate, deploy on a host, reschedule off a
disabled host (what `onehci rebuild` relies on, through installer.operations.hosts.flush),
terminate, persistence, and OpenNebula's refusals."""

from __future__ import annotations

import json
import time

import pyone
import pytest

from installer.errors import OnehciError
from installer.operations import hosts
from tests.standin_daemon import wait_for

VM_TEMPLATE = 'NAME = "{name}"\nCPU = 0.1\nVCPU = 1\nMEMORY = 64\nLABEL = "test"\n'


@pytest.fixture
def cloud(standin, tmp_path):
    """A stand-in with cluster "lab" (system datastore, hosts lab1-lab3 all MONITORED)."""
    (tmp_path / "fake/bin/mountpoint").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "fake/bin/mountpoint").chmod(0o755)
    daemon = standin("--monitor-interval", "0.2", "--sched-interval", "0.5",
                     location=str(tmp_path / "ds"))
    one = daemon.one()
    cluster = one.cluster.allocate("lab")
    system = one.datastore.allocate('NAME = "lab-system"\nTYPE = SYSTEM_DS\nTM_MAD = shared', cluster)
    ids = {name: one.host.allocate(name, "kvm", "kvm", cluster) for name in ("lab1", "lab2", "lab3")}
    wait_for(lambda: all(one.host.info(i).STATE == 2 for i in ids.values()), "3 hosts MONITORED")
    return daemon, one, ids, system


def running_on(one, host_id: int, name: str = "vm") -> int:
    """What a test does to have a VM RUNNING on a host: allocate, then deploy there."""
    vm_id = one.vm.allocate(VM_TEMPLATE.format(name=name), False)
    one.vm.deploy(vm_id, host_id, False, -1)
    return vm_id


def test_allocate_then_deploy_places_the_vm(cloud):
    daemon, one, ids, system = cloud
    vm_id = one.vm.allocate(VM_TEMPLATE.format(name="web"), False)
    vm = one.vm.info(vm_id)
    assert (vm.NAME, vm.STATE, vm.LCM_STATE, vm.RESCHED) == ("web", 1, 0, 0)  # PENDING
    assert vm.HISTORY_RECORDS.HISTORY == []
    assert vm.TEMPLATE["CPU"] == "0.1" and vm.TEMPLATE["MEMORY"] == "64"
    assert vm.USER_TEMPLATE["LABEL"] == "test"
    assert one.vm.deploy(vm_id, ids["lab2"], False, -1) == vm_id
    vm = one.vm.info(vm_id)
    assert (vm.STATE, vm.LCM_STATE, vm.DEPLOY_ID) == (3, 3, f"one-{vm_id}")  # ACTIVE, RUNNING
    [record] = vm.HISTORY_RECORDS.HISTORY
    assert (record.SEQ, record.HOSTNAME, record.HID, record.DS_ID, record.TM_MAD) == (
        0, "lab2", ids["lab2"], system, "shared")
    host = one.host.info(ids["lab2"])
    assert host.VMS.ID == [vm_id] and host.HOST_SHARE.RUNNING_VMS == 1
    assert host.HOST_SHARE.CPU_USAGE == 10 and host.HOST_SHARE.MEM_USAGE == 64 * 1024
    assert hosts.vms_on(one, "lab2") == [vm_id] and hosts.vms_on(one, "lab1") == []
    pool = one.vmpool.infoextended(-2, -1, -1, -1).VM
    assert [(v.ID, v.HISTORY_RECORDS.HISTORY[-1].HOSTNAME) for v in pool] == [(vm_id, "lab2")]
    # a name defaults to one-ID; submitted on hold, it is HOLD and can still be deployed
    held = one.vm.allocate("CPU = 1\nMEMORY = 128", True)
    assert (one.vm.info(held).NAME, one.vm.info(held).STATE) == (f"one-{held}", 2)
    one.vm.deploy(held, ids["lab1"])
    assert one.vm.info(held).LCM_STATE == 3


def test_allocate_and_deploy_refusals_are_opennebula_s(cloud):
    daemon, one, ids, system = cloud
    for text, message in (("NAME = a\nCPU = 1", "MEMORY attribute must be a positive integer value."),
                          ("NAME = a\nMEMORY = 0\nCPU = 1", "MEMORY attribute must be a positive integer value."),
                          ("NAME = a\nMEMORY = 64", "CPU attribute must be a positive float or integer value."),
                          ("NAME = a\nMEMORY = 64\nCPU = -1", "CPU attribute must be a positive float or integer value."),
                          ("NAME = a\nMEMORY = 64\nCPU = 1\nVCPU = x", "VCPU attribute must be a positive integer value."),
                          ('NAME = "a/b"\nMEMORY = 64\nCPU = 1', "Invalid NAME")):
        answer = daemon.raw("one.vm.allocate", text, False)
        assert answer[:3] == [False, answer[1], 0x4000], (text, answer)
        assert answer[1].startswith("[one.vm.allocate] Error allocating a new virtual machine. " + message)
    vm_id = one.vm.allocate(VM_TEMPLATE.format(name="x"), False)
    # OFFLINE hosts are refused, as oned's get_host_information does
    one.host.status(ids["lab3"], 2)
    answer = daemon.raw("one.vm.deploy", vm_id, ids["lab3"], False, -1)
    assert answer[:3] == [False, "[one.vm.deploy] Host is offline, cannot use it to deploy VM", 0x0800]
    # enforce: a DISABLED host is refused (the stand-in's simplification of the capacity test)
    one.host.status(ids["lab1"], 1)
    with pytest.raises(pyone.OneActionException, match=rf"virtual machine \[{vm_id}\] does not fit in "
                       rf"host \[{ids['lab1']}\]. Host is DISABLED, not MONITORED"):
        one.vm.deploy(vm_id, ids["lab1"], True, -1)
    big = one.vm.allocate("NAME = big\nCPU = 1000\nMEMORY = 64", False)
    with pytest.raises(pyone.OneActionException, match="Not enough capacity"):
        one.vm.deploy(big, ids["lab2"], True, -1)
    with pytest.raises(pyone.OneNoExistsException, match=r"Error getting host \[99\]"):
        one.vm.deploy(vm_id, 99, False, -1)
    with pytest.raises(pyone.OneNoExistsException, match=r"Error getting virtual machine \[99\]"):
        one.vm.deploy(99, ids["lab2"], False, -1)
    with pytest.raises(pyone.OneActionException, match=r"datastore \[1\] is not a system datastore"):
        one.vm.deploy(vm_id, ids["lab2"], False, 1)
    with pytest.raises(pyone.OneActionException, match=r"datastore \[0\] and host \[\d+\] are not in the "
                       r"same cluster"):
        one.vm.deploy(vm_id, ids["lab2"], False, 0)
    default = one.host.allocate("lone", "kvm", "kvm", -1)  # cluster 0 holds system datastore 0
    one.host.status(default, 1)
    one.vm.deploy(vm_id, default, False, -1)  # without enforce, oned places it on a disabled host
    assert one.vm.info(vm_id).HISTORY_RECORDS.HISTORY[0].DS_ID == 0
    answer = daemon.raw("one.vm.deploy", vm_id, ids["lab2"], False, -1)
    assert answer[:3] == [False, "[one.vm.deploy] Deploy action is not available for state RUNNING", 0x0800]


def test_flush_moves_vms_off_a_disabled_host_within_seconds(cloud):
    daemon, one, ids, system = cloud
    moving = [running_on(one, ids["lab1"], f"m{i}") for i in range(3)]
    already = running_on(one, ids["lab3"], "stays")
    hosts.set_state(one, "lab1", hosts.DISABLE)
    said: list[str] = []
    started = time.monotonic()
    assert hosts.flush(one, "lab1", timeout=10, say=said.append, interval=0.1) == moving
    took = time.monotonic() - started
    assert took < 3, took
    assert hosts.vms_on(one, "lab1") == []
    # each went to the MONITORED host with the fewest VMs: lab2, lab2 or lab3, never lab1
    placed = {v: one.vm.info(v).HISTORY_RECORDS.HISTORY[-1].HOSTNAME for v in moving}
    assert set(placed.values()) <= {"lab2", "lab3"} and list(placed.values()).count("lab2") >= 2
    assert sorted(hosts.vms_on(one, "lab2") + hosts.vms_on(one, "lab3")) == sorted(moving + [already])
    vm = one.vm.info(moving[0])
    assert (vm.STATE, vm.LCM_STATE, vm.RESCHED) == (3, 3, 0)
    first, second = vm.HISTORY_RECORDS.HISTORY
    assert (first.HOSTNAME, first.ACTION, second.SEQ) == ("lab1", 1, 1)  # closed by MIGRATE_ACTION
    assert first.ETIME > 0 and second.ETIME == 0
    assert said[0].startswith("OpenNebula: moving 3 VM(s) off lab1")
    assert "rescheduled: migrated from lab1 to" in daemon.log.read_text()
    assert hosts.flush(one, "lab1", say=said.append) == []  # twice is safe: nothing left


def test_resched_without_another_host_leaves_the_vm_flagged(cloud):
    daemon, one, ids, system = cloud
    vm_id = running_on(one, ids["lab1"])
    for name in ("lab1", "lab2"):
        one.host.status(ids[name], 1)
    one.host.status(ids["lab3"], 2)
    assert one.vm.action("resched", vm_id) == vm_id
    wait_for(lambda: "cannot be rescheduled" in daemon.log.read_text(), "the scheduler's warning")
    vm = one.vm.info(vm_id)
    assert (vm.RESCHED, vm.HISTORY_RECORDS.HISTORY[-1].HOSTNAME) == (1, "lab1")
    with pytest.raises(OnehciError, match=r"1 VM\(s\) still on lab1 after 1 s"):
        hosts.flush(one, "lab1", timeout=1, say=lambda _: None, interval=0.2)
    assert daemon.log.read_text().count("cannot be rescheduled") == 1  # said once, not every round
    one.host.status(ids["lab2"], 0)  # enabled: back to MONITORED, the VM goes there
    wait_for(lambda: one.vm.info(vm_id).HISTORY_RECORDS.HISTORY[-1].HOSTNAME == "lab2",
             "the VM moved once a host is back", timeout=5)
    assert one.vm.info(vm_id).RESCHED == 0


def test_actions_terminate_and_host_delete(cloud):
    daemon, one, ids, system = cloud
    vm_id = running_on(one, ids["lab2"])
    answer = daemon.raw("one.vm.action", "dance", vm_id)
    assert answer[:3] == [False, '[one.vm.action] Action "dance" is not supported', 0x0800]
    with pytest.raises(pyone.OneActionException, match="not supported by the onehci stand-in"):
        one.vm.action("poweroff", vm_id)
    pending = one.vm.allocate(VM_TEMPLATE.format(name="p"), False)
    answer = daemon.raw("one.vm.action", "resched", pending)
    assert answer[:3] == [False, '[one.vm.action] Error performing action "resched": This action is '
                                 "not available for state PENDING", 0x0800]
    with pytest.raises(pyone.OneNoExistsException, match=r"Error getting virtual machine \[77\]"):
        one.vm.action("resched", 77)
    # a host with VMs cannot be deleted (HostPool::drop); offline it keeps them
    answer = daemon.raw("one.host.delete", ids["lab2"])
    assert answer[:3] == [False, "[one.host.delete] Cannot delete host. Can not remove a host with "
                                 "running VMs", 0x0800]
    one.host.status(ids["lab2"], 2)
    assert one.host.info(ids["lab2"]).VMS.ID == [vm_id]
    one.vm.action("terminate-hard", vm_id)
    vm = one.vm.info(vm_id)
    assert (vm.STATE, vm.LCM_STATE, vm.HISTORY_RECORDS.HISTORY[-1].ACTION) == (6, 0, 28)  # DONE
    assert vm.ETIME > 0 and one.host.info(ids["lab2"]).VMS.ID == []
    assert [v.ID for v in one.vmpool.info(-2, -1, -1, -1).VM] == [pending]  # DONE left out
    assert [v.ID for v in one.vmpool.info(-2, -1, -1, 6).VM] == [vm_id]
    with pytest.raises(pyone.OneActionException, match="not available for state DONE"):
        one.vm.action("terminate", vm_id)
    one.vm.action("terminate", pending)  # a pending VM ends at once
    assert one.vm.info(pending).STATE == 6
    assert one.host.delete(ids["lab2"]) == ids["lab2"]


def test_vms_survive_a_restart_and_old_state_files_load(cloud, standin):
    daemon, one, ids, system = cloud
    vm_id = running_on(one, ids["lab1"])
    one.host.status(ids["lab3"], 2)
    one.host.status(ids["lab2"], 2)
    one.vm.action("resched", vm_id)  # nowhere to go: the flag must survive
    daemon.stop()
    second = standin("--monitor-interval", "0.2", location=daemon.location)
    again = second.one()
    vm = again.vm.info(vm_id)
    assert (vm.NAME, vm.STATE, vm.LCM_STATE, vm.RESCHED) == ("vm", 3, 3, 1)
    assert vm.HISTORY_RECORDS.HISTORY[0].HOSTNAME == "lab1" and vm.USER_TEMPLATE["LABEL"] == "test"
    assert again.host.info(ids["lab1"]).VMS.ID == [vm_id]
    assert again.vm.allocate("CPU = 1\nMEMORY = 1", False) == vm_id + 1  # ids are never reused
    second.stop()
    # a state file written before VMs existed still loads, with an empty VM pool
    state = json.loads(daemon.state.read_text())
    del state["vm"], state["last_oid"]["vm"]
    daemon.state.write_text(json.dumps(state))
    old = standin("--monitor-interval", "0.2", location=daemon.location).one()
    assert old.vmpool.info(-2, -1, -1, -2).VM == []
    assert old.host.info(ids["lab1"]).VMS.ID == []
    assert old.vm.allocate("CPU = 1\nMEMORY = 1", False) == 0
