"""The whole cloud on the 3-node lab with OpenNebula 7.0.2 built from its source: deploy installs
the packages from the lab's repository as from OpenNebula's own, starts oned, registers hosts,
datastores and the network through pyone; a real VM runs on a host and leaves it; `onehci smoke`
boots a guest on every host and live-migrates one; a chunkserver killed while a guest writes
its disk loses nothing the guest wrote (the guest's own read-back says so); a second deploy
creates and changes nothing; registration reports drift and leaves it; oneadmin's SSH mesh works
from inside the nodes; `onehci status` is green, then names what is broken; the defects a reading
of OpenNebula's source found stay fixed (the bridge of a host without VMs, QEMU's user and
AppArmor, oned's address at boot, the firewall without the blanket rule); and no secret shows up
in any output, log or artifact. The cloud (tests/lab/conftest.py) goes on to
tests/lab/test_rebuild.py, which reinstalls nodes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from installer import ansible, lab, one, state
from installer.errors import OnehciError
from tests.lab.conftest import onehci
from tests.lab import helpers
from tests.lab.helpers import blank_vm, guest_watch, sh, smoke_guest, terminate, wait_for

MOUNT = "/var/lib/one/datastores"
KVM = ["lab1", "lab2", "lab3"]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ONEHCI_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))  # kept after the run


def status(cloud) -> tuple[int, dict]:
    proc = onehci("status", "--json", cloud.site)
    return proc.returncode, json.loads(proc.stdout)


def lines_about(report: dict, text: str) -> list[dict]:
    return [c for c in report["checks"] if text in c["component"] or text in c["reason"]]


@pytest.fixture(scope="module")
def cloud(lab_cloud):
    return lab_cloud


def test_opennebula_is_the_real_daemon_built_here_and_installed_from_the_labs_repository(cloud):
    listing = sh(cloud.loaded, "lab1", "dpkg-query -W -f '${Package} ${Version}\\n' 'opennebula*'").stdout.split("\n")
    assert {"opennebula 7.0.2-1~onehci1", "opennebula-tools 7.0.2-1~onehci1", "opennebula-libs 7.0.2-1~onehci1",
            "opennebula-common 7.0.2-1~onehci1", "opennebula-node-kvm 7.0.2-1~onehci1"} <= set(listing), listing
    source = sh(cloud.loaded, "lab2", "cat /etc/apt/sources.list.d/opennebula.list").stdout
    assert "deb [signed-by=/etc/apt/keyrings/opennebula.asc] http://10.71.0.1:8633/ stable opennebula" in source
    assert cloud.client().system.version() == "7.0.2"
    running = sh(cloud.loaded, "lab1", "systemctl is-active opennebula; pgrep -u oneadmin -x oned; "
                                       "pgrep -u oneadmin -x onemonitord").stdout.split()
    assert running[0] == "active" and len(running) == 3, running
    # the probes really ran on every host, over SSH as oneadmin: the remotes were copied there
    for node in KVM:
        assert sh(cloud.loaded, node, "test -x /var/tmp/one/im/run_monitord_client && echo copied").stdout == "copied\n"


def test_every_kvm_node_is_a_monitored_host_with_the_sites_vm_driver(cloud):
    client = cloud.client()
    clusters = [c for c in client.clusterpool.info().CLUSTER if c.NAME == "lab"]
    assert len(clusters) == 1
    hosts = {h.NAME: h for h in client.hostpool.info().HOST}
    assert sorted(hosts) == KVM
    for host in hosts.values():
        assert host.STATE == one.MONITORED, (host.NAME, host.STATE, host.TEMPLATE.get("ERROR"))
        # profiles/lab.yml: opennebula.vm_driver qemu (no KVM guests in the lab)
        assert host.CLUSTER_ID == clusters[0].ID and (host.IM_MAD, host.VM_MAD) == ("qemu", "qemu")


def test_two_shared_datastores_on_the_moosefs_path_and_the_network(cloud):
    client = cloud.client()
    cluster = next(c for c in client.clusterpool.info().CLUSTER if c.NAME == "lab")
    stores = {d.NAME: d for d in client.datastorepool.info().DATASTORE}
    system, images = stores["lab-system"], stores["lab-images"]
    for ds in (system, images):
        assert ds.TM_MAD == "shared"
        assert str(Path(ds.BASE_PATH)).startswith(MOUNT + "/"), ds.BASE_PATH
        assert cluster.ID in ds.CLUSTERS.ID
    assert system.TYPE == 1 and images.TYPE == 0 and images.DS_MAD == "fs"
    vnets = {v.NAME: v for v in client.vnpool.info(-2, -1, -1).VNET}
    vnet = vnets["lab-vms"]
    assert vnet.BRIDGE == "br0" and vnet.VN_MAD == "bridge"
    ar = vnet.AR_POOL.AR[0]
    assert (ar.IP, int(ar.SIZE)) == ("10.72.0.10", 50)


def test_status_is_green(cloud):
    def green():
        code, report = status(cloud)
        return (code, report) if code == 0 else None
    # the datastores get their sizes from the first monitoring rounds
    code, report = wait_for("status to be green", green, 120, 3)
    cloud.outputs.append(json.dumps(report))
    assert report["verdict"] == "healthy" and report["seconds"] < 10
    api = lines_about(report, "opennebula api")[0]
    assert api["reason"] == "OpenNebula 7.0.2 at http://10.71.0.11:2633/RPC2"


def test_a_vm_runs_as_oneadmin_on_the_shared_datastore_and_its_hosts_bridge_outlives_it(cloud):
    """Three of the defects found in OpenNebula's source, on a real VM: QEMU runs as oneadmin with
    ownership left alone (the datastores are 0750 oneadmin); AppArmor lets QEMU reach them; the
    bridge stays when the last VM leaves the host, so the next deploy finds it."""
    client = cloud.client()
    system = {d.NAME: d.ID for d in client.datastorepool.info().DATASTORE}["lab-system"]
    vm = blank_vm(cloud.loaded, "lab3", "probe-vm")
    try:
        qemu = sh(cloud.loaded, "lab3", "ps -eo user:20,args | awk '/[g]uest=one-/ {print $1}'").stdout.split()
        assert qemu == ["oneadmin"], qemu
        disk = sh(cloud.loaded, "lab3", f"stat -L -c '%U %G' {MOUNT}/{system}/{vm}/disk.0").stdout
        assert disk.strip() == "oneadmin oneadmin"
        assert "master br0" in sh(cloud.loaded, "lab3", "ip -o link show master br0").stdout
    finally:
        terminate(client, vm)
    assert sh(cloud.loaded, "lab3", "ip -o link show master br0 | wc -l").stdout.strip() == "0"
    assert "br0" in sh(cloud.loaded, "lab3", "ip -br link show br0").stdout  # kept (keep_empty_bridge)
    # AppArmor: the rule reaches every VM profile libvirt makes from its abstraction
    profile = sh(cloud.loaded, "lab3", "printf 'profile probe {\\n  #include <abstractions/libvirt-qemu>\\n}\\n' "
                                       "| apparmor_parser -Q -K -p").stdout
    assert f"{MOUNT}/** rwk," in profile


def test_smoke_runs_a_guest_on_every_host_migrates_one_and_leaves_nothing(cloud):
    """`onehci smoke`: the guest's own words (its serial console, logged on its host) say it came up
    at the address OpenNebula gave it; one VM live-migrates and keeps beating on its new host."""
    client = cloud.client()
    before = ({i.ID for i in client.imagepool.info(-2, -1, -1).IMAGE},
              {t.ID for t in client.templatepool.info(-2, -1, -1).VMTEMPLATE})
    proc = onehci("smoke", "--json", cloud.site)
    cloud.outputs += [proc.stdout, proc.stderr]
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    print("smoke:", [(s["name"], s["seconds"]) for s in result["steps"]], result["migrated"])
    assert result["ok"] and [s["name"] for s in result["steps"]] == [
        "hosts", "image", "template", "start", "running", "guest up", "migrate", "cleanup"]
    guests = result["guests"]
    assert len(guests) == len(KVM) and guests[0]["vm"] == result["migrated"]["vm"]
    assert {result["migrated"]["from"], *(g["host"] for g in guests[1:])} == set(KVM)  # one guest on each host
    for guest in guests:
        assert guest["ip"].startswith("10.72.0.") and guest["up_seconds"] is not None, guest
    moved = result["migrated"]
    # its heartbeat counts on where it left off: the same guest, memory and all, not a reboot
    assert moved["from"] != moved["to"] and moved["beats_after"] > moved["beats_before"] > 0, moved
    # nothing left: the VMs done, the image and template this run made removed
    states = {v.ID: v.STATE for v in client.vmpool.info(-2, -1, -1, -2).VM if v.NAME.startswith("onehci-smoke-")}
    assert all(states.get(g["vm"], 6) == 6 for g in guests), states
    after = ({i.ID for i in client.imagepool.info(-2, -1, -1).IMAGE},
             {t.ID for t in client.templatepool.info(-2, -1, -1).VMTEMPLATE})
    assert after == before


def smoke_objects(client) -> tuple[set, set, set]:
    """The IDs of the images, templates and VMs not DONE that are smoke's."""
    return ({i.ID for i in client.imagepool.info(-2, -1, -1).IMAGE if i.NAME.startswith("onehci-smoke")},
            {t.ID for t in client.templatepool.info(-2, -1, -1).VMTEMPLATE if t.NAME.startswith("onehci-smoke")},
            {v.ID for v in client.vmpool.info(-2, -1, -1, -1).VM or [] if v.NAME.startswith("onehci-smoke")})


def test_smoke_names_a_full_images_datastore_and_leaves_nothing(cloud):
    client = cloud.client()
    images = {d.NAME: d for d in client.datastorepool.info().DATASTORE}["lab-images"]
    before = smoke_objects(client)
    client.datastore.update(images.ID, 'LIMIT_MB = "1"', 1)  # OpenNebula's own cap: the store is "full"
    try:
        proc = onehci("smoke", "--json", cloud.site)
    finally:
        # no cap again: the attribute removed (OpenNebula takes any LIMIT_MB, -1 too, as a cap)
        template = {k: v for k, v in client.datastore.info(images.ID).TEMPLATE.items() if k != "LIMIT_MB"}
        client.datastore.update(images.ID, one.template(template), 0)
    result = json.loads(proc.stdout)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert [(s["name"], s["ok"]) for s in result["steps"]][-2:] == [("image", False), ("cleanup", True)]
    assert "Not enough space in datastore" in result["error"], result["error"]
    assert "\n" not in result["error"] and "Traceback" not in proc.stderr
    assert smoke_objects(client) == before


def test_smoke_names_a_guest_that_never_boots_and_removes_what_it_made(cloud):
    """An image called onehci-smoke that boots nothing, registered beforehand: smoke reuses it, its
    VM runs in OpenNebula but the guest never says a word; smoke says which VM, on which host,
    terminates it and removes the template it made, and leaves the image it did not make."""
    client = cloud.client()
    sh(cloud.loaded, "lab1", "truncate -s 16M /var/tmp/noboot.img && chown oneadmin: /var/tmp/noboot.img")
    store = {d.NAME: d.ID for d in client.datastorepool.info().DATASTORE}["lab-images"]
    image = client.image.allocate('NAME = "onehci-smoke"\nPATH = "/var/tmp/noboot.img"\nTYPE = "OS"\n'
                                  'FORMAT = "raw"\n', store)
    try:
        wait_for("the blank image READY", lambda: client.image.info(image).STATE == 1, 120)
        before = smoke_objects(client)
        proc = onehci("smoke", "--json", "--count", "1", "--timeout", "60", cloud.site)
        result = json.loads(proc.stdout)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert [(s["name"], s["ok"]) for s in result["steps"]][-2:] == [("guest up", False), ("cleanup", True)]
        vm, host = result["guests"][0]["vm"], result["guests"][0]["host"]
        assert result["error"].startswith(f"guests not up after 60 s: VM {vm} on {host} said nothing; "), result["error"]
        assert "smoke: guest up FAILED after" in proc.stderr
        assert smoke_objects(client) == before  # the VM done, the template removed, the image kept
    finally:
        client.image.delete(image)


def test_status_counts_the_vms_on_each_host_and_names_a_failed_vm_with_its_host_and_error(cloud):
    client = cloud.client()
    running = blank_vm(cloud.loaded, "lab3", "status-running")
    # a VM whose kernel is not there: QEMU cannot start it, OpenNebula marks it failed with libvirt's word
    broken = client.vm.allocate('NAME = "status-broken"\nCPU = 0.1\nVCPU = 1\nMEMORY = 64\n'
                                'OS = [ KERNEL = "/nonexistent/vmlinuz" ]\n', False)
    client.vm.deploy(broken, {h.NAME: h.ID for h in client.hostpool.info().HOST}["lab2"], False, -1)
    try:
        def amber():
            code, report = status(cloud)
            vms = lines_about(report, "opennebula vms")
            return code == 1 and vms and vms[0]["colour"] == "amber" and (report, vms[0])

        report, vms = wait_for("status to name the failed VM", amber, 180, 3)
        assert vms["reason"].startswith(f"1 failed (VM {broken} on lab2: "), vms
        assert vms["reason"].endswith("), 1 running"), vms
        hosts_ = {c["component"]: c for c in report["checks"] if c["component"].startswith("host lab")}
        assert hosts_["host lab3"]["reason"] == "monitored, 1 VM(s) running", hosts_
        assert hosts_["host lab1"]["reason"] == "monitored, 0 VM(s) running", hosts_
    finally:
        terminate(client, running)
        client.vm.action("terminate-hard", broken)
    wait_for("status green again", lambda: status(cloud)[0] == 0, 120, 3)


NO_RESTART = "/run/systemd/system/moosefs-chunkserver.service.d/test-stays-down.conf"


def test_a_chunkserver_killed_while_a_guest_writes_loses_nothing_the_guest_wrote(cloud):
    """kill -9 of a chunkserver holding a copy of the guest's data disk while the guest writes it
    (1 MiB a round, then reads back past its cache all it ever wrote): the VM keeps running, and
    the guest's own read-back says nothing it wrote changed, before, during and after."""
    client = cloud.client()
    system = {d.NAME: d.ID for d in client.datastorepool.info().DATASTORE}[one.object_names("lab")["system"]]
    address = {n.ip: n.hostname for n in cloud.plan.nodes}
    with smoke_guest(cloud.loaded, cloud.site, client, on="lab1") as guest, \
            guest_watch(cloud.loaded, client, guest) as heard:
        wait_for("two disk rounds", lambda: heard and heard[-1].disk_round >= 2, 120)
        info = sh(cloud.loaded, "lab1", f"mfsfileinfo {MOUNT}/{system}/{guest.vm}/disk.1").stdout
        holders = [address[line.split(": ")[1].split(":")[0]] for line in info.splitlines() if "copy " in line]
        assert len(holders) == 2, info  # storage.goal 2: the disk is on MooseFS, two copies
        victim = holders[0]
        # no restart by systemd: the chunkserver stays away while the guest goes on writing
        sh(cloud.loaded, victim, f"mkdir -p {os.path.dirname(NO_RESTART)} && "
                                 f"printf '[Service]\\nRestart=no\\n' > {NO_RESTART} && systemctl daemon-reload")
        try:
            sh(cloud.loaded, victim, "kill -9 $(pidof mfschunkserver)")
            at_kill = heard[-1].disk_round
            wait_for("five disk rounds with the chunkserver gone",
                     lambda: heard[-1].disk_round >= at_kill + 5, 300, 2)
            assert sh(cloud.loaded, victim, "pidof mfschunkserver", check=False).returncode == 1  # still gone
            assert helpers.vm_state(client, guest.vm) == ("ACTIVE", "RUNNING")
        finally:
            sh(cloud.loaded, victim, f"rm -f {NO_RESTART} && systemctl daemon-reload && "
                                     "systemctl reset-failed moosefs-chunkserver; systemctl start moosefs-chunkserver")
        back = heard[-1].disk_round
        wait_for("three disk rounds with the chunkserver back", lambda: heard[-1].disk_round >= back + 3, 180, 2)
    helpers.assert_guest_lived(heard)
    print(f"guest rounds: {heard[0].disk_round} -> {at_kill} (kill -9 on {victim}) -> {back} -> {heard[-1].disk_round}")
    wait_for("status green again", lambda: status(cloud)[0] == 0, 420, 5)  # the stale copy replaced


def test_second_deploy_changes_nothing_and_creates_nothing(cloud):
    client = cloud.client()
    before = (len(client.clusterpool.info().CLUSTER), len(client.hostpool.info().HOST),
              len(client.datastorepool.info().DATASTORE), len(client.vnpool.info(-2, -1, -1).VNET))
    again = onehci("deploy", "--json", cloud.site)
    cloud.outputs += [again.stdout, again.stderr]
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads(again.stdout)
    assert {h: r["changed"] for h, r in result["recap"].items()} == {h: 0 for h in KVM}
    assert result["registration"]["created"] == 0 and result["registration"]["drift"] == 0
    after = (len(client.clusterpool.info().CLUSTER), len(client.hostpool.info().HOST),
             len(client.datastorepool.info().DATASTORE), len(client.vnpool.info(-2, -1, -1).VNET))
    assert after == before


def test_drift_is_reported_and_left_as_it_is(cloud):
    client = cloud.client()
    images = {d.NAME: d for d in client.datastorepool.info().DATASTORE}["lab-images"]
    client.datastore.update(images.ID, 'TM_MAD = "ssh"', 1)  # 1: merge
    try:
        said: list[str] = []
        report = one.register(cloud.loaded, cloud.plan, client, said.append)
        found = {o.name: o for o in report.objects}["lab-images"]
        assert found.drift == ["TM_MAD is ssh, onehci sets shared"]
        assert (f"OpenNebula: datastore lab-images (id {images.ID}): drift: TM_MAD is ssh, onehci sets shared; "
                "left as it is") in said
        assert client.datastore.info(images.ID).TM_MAD == "ssh"  # left as it is
        # a plan whose mount is elsewhere: every datastore is drift (BASE_PATH off the mount)
        elsewhere = dataclasses.replace(cloud.plan, moosefs=dataclasses.replace(cloud.plan.moosefs, mount="/srv/elsewhere"))
        report = one.register(cloud.loaded, elsewhere, client, said.append)
        system = {o.name: o for o in report.objects}["lab-system"]
        base = client.datastore.info(system.id).BASE_PATH  # OpenNebula writes /var/lib/one//datastores/ID
        assert os.path.normpath(base) == f"{MOUNT}/{system.id}"
        assert system.drift == [f"BASE_PATH {base} is not /srv/elsewhere/{system.id} on the MooseFS "
                                "mount (DATASTORE_LOCATION in oned.conf)"]
    finally:
        client.datastore.update(images.ID, 'TM_MAD = "shared"', 1)
    assert one.register(cloud.loaded, cloud.plan, client, lambda _m: None).as_dict()["drift"] == 0


def test_registration_limited_to_a_host_looks_at_that_host_only(cloud):
    report = one.register(cloud.loaded, cloud.plan, cloud.client(), lambda _m: None, hosts=["lab2"])
    assert [o.name for o in report.objects if o.kind == "host"] == ["lab2"]
    assert report.as_dict()["created"] == 0


def test_a_host_that_cannot_be_monitored_fails_the_wait_with_opennebulas_error_then_recovers(cloud):
    client = cloud.client()
    # the frontend's monitoring copies its drivers to /var/tmp/one on the host first: a file in
    # the way fails every round (SSH itself would not do: oneadmin's connections are multiplexed),
    # and the monitoring agent already running there stops sending
    sh(cloud.loaded, "lab3", "mv /var/tmp/one /var/tmp/one.away && touch /var/tmp/one && { pkill -f '[m]onitord-client.rb' || true; }")
    try:
        one.monitor_again(client, {h.NAME: h for h in client.hostpool.info().HOST}["lab3"])
        said: list[str] = []
        with pytest.raises(OnehciError) as caught:
            one.wait_monitored(client, ["lab3"], timeout=150, say=said.append, interval=2)
        message = str(caught.value)
        assert message.startswith("host lab3 is in ERROR: ") and "Error monitoring Host lab3" in message, message
        assert any("asking for a new monitoring round" in line for line in said), said
        # smoke on a cloud with a host in ERROR: one line naming it, nothing started or made
        before = smoke_objects(client)
        proc = onehci("smoke", "--json", cloud.site)
        result = json.loads(proc.stdout)
        assert proc.returncode == 1 and [(s["name"], s["ok"]) for s in result["steps"]] == [
            ("hosts", False), ("cleanup", True)], result["steps"]
        assert result["error"].startswith("KVM hosts not monitored: lab3 (ERROR: "), result["error"]
        assert "\n" not in result["error"] and "Traceback" not in proc.stderr
        assert smoke_objects(client) == before
    finally:
        sh(cloud.loaded, "lab3", "rm /var/tmp/one && mv /var/tmp/one.away /var/tmp/one")
    # mended: the wait asks for a new round at once instead of OpenNebula's retry minutes later
    assert one.wait_monitored(client, ["lab3"], timeout=150, say=lambda _m: None, interval=2) == {"lab3": "MONITORED"}


@pytest.mark.parametrize("source,target", [("lab1", "lab2"), ("lab1", "lab3"), ("lab2", "lab3"), ("lab3", "lab2"),
                                           ("lab2", "lab1")])
def test_oneadmin_ssh_mesh(cloud, source, target):
    """Frontend to every host and host to host (live migration), as oneadmin, with no password
    and no question about host keys; virsh without a URI reaches the system libvirt, as the
    monitoring probes call it."""
    proc = sh(cloud.loaded, source, f"runuser -u oneadmin -- ssh -o BatchMode=yes {target} "
                                    "virsh uri", check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "qemu:///system", proc.stderr


@pytest.mark.parametrize("node", ["lab1", "lab2", "lab3"])
def test_oneadmin_lingers_so_its_logins_never_wait_for_a_stopping_user_manager(cloud, node):
    linger = sh(cloud.loaded, node, "loginctl show-user oneadmin -p Linger --value").stdout.strip()
    assert linger == "yes"


def test_hosts_stay_monitored_with_only_the_explicit_firewall_rules(cloud, tmp_path):
    """The roles without the blanket "accept the cluster networks" rule (the roles' own
    variable, through ansible-playbook and `onehci inventory` as docs/roles/README.md shows):
    monitord (4124), the API and the consoles keep their explicit rules, a new monitoring round
    of every host passes. Then the default comes back."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(onehci("inventory", cloud.site).stdout)
    firewall = tmp_path / "firewall.yml"  # the preflight and the role that owns the ruleset, nothing else
    firewall.write_text(f"- import_playbook: {ROOT / 'playbooks/preflight.yml'}\n"
                        "- hosts: all\n  gather_facts: false\n  roles: [common]\n")

    def playbook(accept: bool) -> None:
        env = {**os.environ, **ansible.strategy_env(), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
               "ANSIBLE_PIPELINING": "True"}
        run = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
                              str(firewall), "-e",
                              json.dumps({"common__firewall_accept_cluster": accept})],
                             capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stdout[-3000:]

    playbook(False)
    try:
        ruleset = sh(cloud.loaded, "lab1", "nft list chain inet onehci input").stdout
        assert "ip saddr @cluster4 accept" not in ruleset  # the blanket rule is gone
        assert "4124" in ruleset and "2633" in ruleset, ruleset
        client = cloud.client()
        for host in client.hostpool.info().HOST:
            one.monitor_again(client, host)
        assert one.wait_monitored(client, KVM, timeout=150, say=lambda _m: None, interval=2) == \
            {h: "MONITORED" for h in KVM}
    finally:
        playbook(True)
    assert "ip saddr @cluster4 accept" in sh(cloud.loaded, "lab1", "nft list chain inet onehci input").stdout


def test_oned_waits_for_its_address_at_boot(cloud):
    """oned cannot start before its LISTEN_ADDRESS exists (a NIC up late at boot): the unit waits."""
    sh(cloud.loaded, "lab1", "systemctl stop opennebula && ip address del 10.71.0.11/24 dev eth0 && "
                             "systemctl start --no-block opennebula")
    try:
        wait_for("oned's start to wait for its address",
                 lambda: "waiting for 10.71.0.11" in sh(cloud.loaded, "lab1", "journalctl -u opennebula -n 20 -o cat",
                                                         check=False).stdout, 30, 1)
        assert sh(cloud.loaded, "lab1", "systemctl is-active opennebula", check=False).stdout.strip() == "activating"
    finally:
        sh(cloud.loaded, "lab1", "ip address add 10.71.0.11/24 dev eth0; ip route replace default via 10.71.0.1",
           check=False)
    wait_for("oned to start once its address is back",
             lambda: sh(cloud.loaded, "lab1", "systemctl is-active opennebula", check=False).stdout.strip() == "active",
             90, 2)
    assert cloud.client().system.version() == "7.0.2"
    wait_for("the hosts monitored again", lambda: status(cloud)[0] == 0, 240, 5)


def test_a_deploy_whose_oned_does_not_start_names_the_unit_and_its_last_log_lines(cloud):
    conf = "/etc/one/oned.conf"
    sh(cloud.loaded, "lab1", f"cp {conf} /root/oned.conf.good && echo 'BROKEN = [' >> {conf} && "
                             "systemctl stop opennebula")
    try:
        proc = onehci("deploy", "--limit", "lab1", cloud.site)
        assert proc.returncode == 1
        error = proc.stderr.strip().splitlines()[-1]
        assert "opennebula did not start on lab1" in error and "Last lines:" in error, error
        assert "Traceback" not in proc.stderr
    finally:
        sh(cloud.loaded, "lab1", f"cp /root/oned.conf.good {conf} && systemctl reset-failed opennebula; "
                                 "systemctl start opennebula")
    wait_for("the API back", lambda: status(cloud)[0] == 0, 240, 5)


def test_a_stopped_chunkserver_turns_status_amber_naming_undergoal_chunks(cloud):
    sh(cloud.loaded, "lab2", f"head -c 70M /dev/urandom > {MOUNT}/status-probe.bin")
    sh(cloud.loaded, "lab3", "systemctl stop moosefs-chunkserver")
    try:
        def amber_undergoal():
            code, report = status(cloud)
            return code == 1 and any(c["colour"] == "amber" and "undergoal" in c["reason"] for c in report["checks"])
        # the chunk matrix is refreshed by the master's chunk loop
        wait_for("status to name undergoal chunks", amber_undergoal, 420, 5)
    finally:
        sh(cloud.loaded, "lab3", "systemctl start moosefs-chunkserver")


def test_libvirt_stopped_on_a_host_is_named_at_once(cloud):
    sh(cloud.loaded, "lab3", "systemctl stop libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket libvirtd",
       check=False)
    try:
        code, report = status(cloud)
        red = [c for c in lines_about(report, "lab3") if c["colour"] == "red"]
        assert code == 1, report  # one host without libvirt: degraded, not down (docs/opennebula.md)
        assert red == [{"component": "libvirt lab3", "colour": "red",
                        "reason": "libvirtd is not running (inactive): no VM can start or be monitored there"}]
    finally:
        sh(cloud.loaded, "lab3", "systemctl start libvirtd")
    assert status(cloud)[0] == 0


def test_moosefs_unmounted_on_a_host_is_named(cloud):
    sh(cloud.loaded, "lab2", f"umount {MOUNT}")
    try:
        code, report = status(cloud)
        red = [c for c in lines_about(report, "lab2") if c["colour"] == "red"]
        assert code == 1 and red and any(MOUNT in c["reason"] or "mount" in c["reason"] for c in red), report
    finally:
        sh(cloud.loaded, "lab2", f"mount {MOUNT}")


def test_the_api_stopped_is_down_and_a_wrong_password_is_red_without_showing_it(cloud):
    sh(cloud.loaded, "lab1", "systemctl stop opennebula")
    try:
        code, report = status(cloud)
        (api,) = lines_about(report, "opennebula api")
        assert code == 2 and api["colour"] == "red" and "is unreachable (connection refused)" in api["reason"], report
    finally:
        sh(cloud.loaded, "lab1", "systemctl start opennebula")
    password_file = state.oneadmin_password_file(cloud.path)
    good = password_file.read_text()
    password_file.write_text("wrong-Pw-77\n")
    try:
        code, report = status(cloud)
        (api,) = lines_about(report, "opennebula api")
        assert code == 2 and "refused the password in" in api["reason"]
        assert "wrong-Pw-77" not in json.dumps(report) and good.strip() not in json.dumps(report)
    finally:
        password_file.write_text(good)
    wait_for("status green again", lambda: status(cloud)[0] == 0, 240, 5)


def test_report_counts_the_vm_this_test_runs_and_its_page_shows_both_plots(cloud):
    """`onehci report` against the real accounting: a VM (CPU 0.1, 64 MiB) run by this test adds one
    start, its running time (as the test saw it, within a minute) in VM-hours, a tenth of that in
    CPU-hours and its memory in GB-hours; while it runs it counts up to now. With an `economics:`
    section (Dijon's figures) the page has both plots; a screenshot is kept in the test artifacts."""
    from selenium.webdriver.common.by import By

    priced = Path(cloud.path).with_name("site-with-economics.yml")  # beside site.yml: the same state
    priced.write_text(Path(cloud.path).read_text() + "\neconomics:\n  purchase: 120000\n  years: 5\n"
                      "  alternatives:\n    - {name: bare metal rented, per_year: 58000}\n"
                      "    - {name: VMs on demand, per_year: 126000}\n")

    def month_now() -> dict:
        proc = onehci("report", "--json", str(priced))
        assert proc.returncode == 0, proc.stderr
        cloud.outputs.append(proc.stdout)
        return json.loads(proc.stdout)["months"][-1]  # this month

    before = month_now()
    vm = blank_vm(cloud.loaded, "lab2", "report-vm")
    running_seen = time.time()
    try:
        during = month_now()
        assert during["vms_started"] == before["vms_started"] + 1
        assert during["vm_hours"] > before["vm_hours"]  # a running VM counts up to now
    finally:
        terminate(cloud.client(), vm)
    ran = time.time() - running_seen  # at most the polls longer than what OpenNebula counts
    after = month_now()
    hours = after["vm_hours"] - before["vm_hours"]
    assert abs(hours * 3600 - ran) < 60, (hours * 3600, ran)
    assert after["cpu_hours"] - before["cpu_hours"] == pytest.approx(0.1 * hours, abs=2e-4)
    assert after["memory_gb_hours"] - before["memory_gb_hours"] == pytest.approx(hours / 16, abs=2e-4)
    assert "lab2" in [h["host"] for h in after["busiest_hosts"]]
    # the answer itself, read with the standard library's parser: onehci's records say the same
    import xml.etree.ElementTree as ET
    import xmlrpc.client

    password = state.oneadmin_password_file(cloud.path).read_text().strip()
    ok, raw, *_ = xmlrpc.client.ServerProxy(one.api_url(cloud.plan)).one.vmpool.accounting(
        f"oneadmin:{password}", one.ALL_VMS, -1, -1)
    assert ok, raw
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "accounting.xml").write_text(raw)  # a recorded document, as tests/unit/data keeps one
    expected = [(int(h.findtext("OID")), int(h.findtext("SEQ")), h.findtext("HOSTNAME"), int(h.findtext("RSTIME")),
                 float(h.findtext("VM/TEMPLATE/CPU")), float(h.findtext("VM/TEMPLATE/MEMORY")))
                for h in ET.fromstring(raw).iter("HISTORY")]
    records = one.accounting(cloud.client(), -1, -1)
    assert [(r.vm, r.seq, r.host, r.start, r.cpu, r.memory_mib) for r in records] == expected
    assert any(r.vm == vm and r.cpu == 0.1 and r.memory_mib == 64 for r in records)
    page = ARTIFACTS / "report.html"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    proc = onehci("report", str(priced), "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    assert "per CPU-hour" in proc.stdout and "VMs on demand" in proc.stdout
    cloud.outputs += [proc.stdout, page.read_text()]
    with helpers.headless_chromium(1000, 1400) as browser:
        browser.get(page.as_uri())
        plots = {f.get_attribute("id"): f.find_element(By.TAG_NAME, "svg").size
                 for f in browser.find_elements(By.TAG_NAME, "figure")}
        assert set(plots) == {"cpu-hours", "cost"}
        assert all(size["width"] > 300 and size["height"] > 100 for size in plots.values()), plots
        shot = ARTIFACTS / "report.png"
        browser.save_screenshot(str(shot))
        print(f"report screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_no_secret_in_any_output_log_or_artifact(cloud):
    password = state.oneadmin_password_file(cloud.path).read_text().strip()
    assert len(password) >= 16
    assert oct(state.oneadmin_password_file(cloud.path).stat().st_mode & 0o777) == "0o600"
    for text in cloud.outputs:
        assert password not in text
    found = subprocess.run(["grep", "-rlF", password, str(state.state_dir(cloud.path))], capture_output=True, text=True)
    leaks = [f for f in found.stdout.split() if Path(f) != state.oneadmin_password_file(cloud.path)]
    assert leaks == [], leaks
    # the nodes' journals and logs: only one_auth may hold it (the password goes to grep on stdin,
    # never on a command line)
    for node in KVM:
        for source in ("journalctl --no-pager -o cat", "cat $(find /var/log /tmp -type f) /dev/null"):
            # the password arrives on stdin, kept as fd 3 for grep's pattern list
            proc = lab.node_exec(cloud.loaded, node, ["bash", "-c", f"exec 3<&0; {source} </dev/null | "
                                                      "grep -cF -f /dev/fd/3 || true"],
                                 input=password + "\n", capture_output=True, text=True)
            assert proc.stdout.strip() == "0", (node, source)


def test_fireedge_lets_oneadmin_log_in_from_a_browser(cloud):
    """OpenNebula's web UI, built from the same source: its login page in headless Chromium
    (Debian's), oneadmin logs in, a screenshot is kept in the test artifacts."""
    import urllib.error
    import urllib.request

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    url = "http://10.71.0.11:2616/fireedge/sunstone"

    def answers():
        try:
            with urllib.request.urlopen(url, timeout=5) as page:
                return page.status == 200
        except OSError:
            return False
    wait_for("FireEdge to answer", answers, 120, 2)
    password = state.oneadmin_password_file(cloud.path).read_text().strip()
    # the API the page logs in through: a JSON web token for oneadmin, nothing for a wrong password
    def login(token: str) -> int:
        request = urllib.request.Request("http://10.71.0.11:2616/fireedge/api/auth/", method="POST",
                                         data=json.dumps({"user": "oneadmin", "token": token}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert json.load(answer)["data"]["token"]
                return answer.status
        except urllib.error.HTTPError as refused:
            return refused.code
    assert login(password) == 200
    assert login(password + "x") == 401
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with helpers.headless_chromium() as browser:
        browser.get(url)
        wait = WebDriverWait(browser, 90)
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "input[data-cy=login-user]")))
        browser.find_element(By.CSS_SELECTOR, "input[data-cy=login-user]").send_keys("oneadmin")
        browser.find_element(By.CSS_SELECTOR, "input[data-cy=login-token]").send_keys(password)
        browser.find_element(By.CSS_SELECTOR, "button[data-cy=login-button]").click()
        # logged in: the dashboard's resource counters and the header's user menu, labelled with the user
        wait.until(ready.presence_of_element_located(
            (By.CSS_SELECTOR, "[data-cy=dashboard-widget-total-sunstone-resources]")))
        wait.until(ready.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-cy=header-user-button]"),
                                                       "oneadmin"))
        assert not browser.find_elements(By.CSS_SELECTOR, "input[data-cy=login-user]")
        shot = ARTIFACTS / "fireedge-after-login.png"
        browser.save_screenshot(str(shot))
        print(f"FireEdge screenshot: {shot}")
        assert shot.stat().st_size > 10_000
        assert password not in browser.page_source
