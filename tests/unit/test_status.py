"""`onehci status`: each rule from canned MooseFS, OpenNebula and mount facts gives the colour
and exit code docs/opennebula.md promises; the mount and libvirt check through a stand-in for
ssh; the checks run concurrently; the verb's output and exit. Status against the lab's real
OpenNebula and MooseFS: tests/lab/test_opennebula.py."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest
from click.testing import CliRunner

from installer import mfs, one, remote, sitefile, status
from installer.cli.main import cli
from installer.plan import make_plan
from installer.status import AMBER, GREEN, RED, Mount, OneView
from tests.conftest import BASE_SITE

GIB = 1024 ** 3
IPS = {"n1": "192.168.10.11", "n2": "192.168.10.12"}  # n3's address is allocated by the plan


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    path = tmp_path_factory.mktemp("site") / "site.yml"
    path.write_text(BASE_SITE)
    return make_plan(sitefile.load(path).site)


def healthy(plan) -> tuple[mfs.Health, OneView, dict[str, Mount]]:
    ip = {n.hostname: n.ip for n in plan.nodes}
    health = mfs.Health(master=ip["n1"], version="3.0.117", reachable=True,
                        chunkservers=[mfs.Chunkserver(ip[n], 9422, "3.0.117", False, 10, 1, 2) for n in ("n1", "n2", "n3")],
                        metaloggers=[ip["n2"], ip["n3"]],
                        chunks={"missing": 0, "endangered": 0, "undergoal": 0, "stable": 40},
                        total_space=100 * GIB, avail_space=80 * GIB)
    view = OneView("http://192.168.10.11:2633/RPC2", version="7.0.0",
                   hosts={n: (one.MONITORED, "") for n in ("n1", "n2", "n3")},
                   datastores={"test-system": (102400, 81920), "test-images": (102400, 81920)})
    mounts = {n: Mount(True, "mfsmaster:9421") for n in ("n1", "n2", "n3")}
    return health, view, mounts


def line(result: status.Status, component: str) -> status.Check:
    (found,) = [c for c in result.checks if c.component == component]
    return found


def test_a_healthy_cloud_is_all_green_and_exit_0(plan):
    result = status.judge(plan, *healthy(plan))
    assert [c.component for c in result.checks] == [
        "moosefs master", "moosefs metaloggers", "moosefs chunkservers", "moosefs chunks", "moosefs space",
        "opennebula api", "opennebula hosts", "host n1", "host n2", "host n3", "opennebula vms",
        "datastore test-system", "datastore test-images", "mount n1", "mount n2", "mount n3"]
    assert {c.colour for c in result.checks} == {GREEN}
    assert (result.exit_code, result.verdict) == (0, "healthy")
    assert line(result, "moosefs master").reason == "MooseFS 3.0.117 at 192.168.10.11"
    assert line(result, "moosefs chunkservers").reason == "3 of 3 connected"
    assert line(result, "moosefs space").reason == "80.0 GiB free of 100.0 GiB (80%)"
    assert line(result, "mount n2").reason == "/var/lib/one/datastores mounted from mfsmaster:9421"
    assert line(result, "host n2").reason == "monitored, 0 VM(s) running"
    assert line(result, "opennebula vms").reason == "0 running, none failed"


def test_a_failed_vm_turns_status_amber_naming_it_its_host_and_why(plan):
    health, view, mounts = healthy(plan)
    view.vms = [(7, "n2", "running", ""), (8, "n3", "failed", "Cannot access storage file"), (9, "n2", "running", "")]
    result = status.judge(plan, health, view, mounts, 0.1)
    assert (line(result, "opennebula vms").colour, line(result, "opennebula vms").reason) == (
        AMBER, "1 failed (VM 8 on n3: Cannot access storage file), 2 running")
    assert line(result, "host n2").reason == "monitored, 2 VM(s) running"
    assert (result.exit_code, result.verdict) == (1, "degraded")


def test_a_vm_of_the_pool_is_read_as_running_failed_or_its_state():
    from types import SimpleNamespace

    import pyone

    def vm(state, lcm, host="n1", error=""):
        history = SimpleNamespace(HISTORY=[SimpleNamespace(HOSTNAME="n0"), SimpleNamespace(HOSTNAME=host)])
        return SimpleNamespace(ID=5, STATE=state, LCM_STATE=lcm, HISTORY_RECORDS=history,
                               USER_TEMPLATE={"ERROR": error} if error else {})

    assert status.vm_row(vm(pyone.VM_STATE.ACTIVE, pyone.LCM_STATE.RUNNING)) == (5, "n1", "running", "")
    assert status.vm_row(vm(pyone.VM_STATE.ACTIVE, pyone.LCM_STATE.BOOT_FAILURE, error="libvirt: no")) == (
        5, "n1", "failed", "libvirt: no")
    assert status.vm_row(vm(pyone.VM_STATE.PENDING, 0, host="")) == (5, "", "PENDING", "")


def _drop_chunkserver(h, v, m, name_ip):
    h.chunkservers = [c for c in h.chunkservers if c.ip != name_ip]


RULES = [
    # (what, change to the healthy facts, component, colour, words in the reason, exit code)
    ("master unreachable", lambda h, v, m, ip: (setattr(h, "reachable", False),
                                                setattr(h, "error", "MooseFS master 192.168.10.11 does not answer on port 9421")),
     "moosefs master", RED, "does not answer on port 9421", 2),
    ("a metalogger gone", lambda h, v, m, ip: setattr(h, "metaloggers", [ip["n2"]]),
     "moosefs metaloggers", AMBER, "1 of 2 connected; missing n3 (", 1),
    ("every metalogger gone", lambda h, v, m, ip: setattr(h, "metaloggers", []),
     "moosefs metaloggers", RED, "0 of 2 connected; missing n2 (192.168.10.12), n3", 1),
    ("a chunkserver gone", lambda h, v, m, ip: _drop_chunkserver(h, v, m, ip["n2"]),
     "moosefs chunkservers", AMBER, "2 of 3 connected; missing n2 (192.168.10.12)", 1),
    ("a chunkserver in maintenance", lambda h, v, m, ip: setattr(
        h, "chunkservers", [dataclasses.replace(c, maintenance=c.ip == ip["n3"]) for c in h.chunkservers]),
     "moosefs chunkservers", AMBER, "3 of 3 connected; in maintenance n3", 1),
    ("no chunkserver", lambda h, v, m, ip: setattr(h, "chunkservers", []),
     "moosefs chunkservers", RED, "0 of 3 connected: no data can be read or written", 2),
    ("missing chunks", lambda h, v, m, ip: h.chunks.update(missing=3),
     "moosefs chunks", RED, "3 missing: no copy left", 1),
    ("endangered and undergoal chunks", lambda h, v, m, ip: h.chunks.update(endangered=5, undergoal=2),
     "moosefs chunks", AMBER, "7 undergoal (5 endangered: one copy left); MooseFS is replicating", 1),
    ("MooseFS space low", lambda h, v, m, ip: setattr(h, "avail_space", 10 * GIB),
     "moosefs space", AMBER, "10.0 GiB free of 100.0 GiB (10%): add chunk disks", 1),
    ("MooseFS space nearly gone", lambda h, v, m, ip: setattr(h, "avail_space", 4 * GIB),
     "moosefs space", RED, "(4%)", 1),
    ("API unreachable", lambda h, v, m, ip: setattr(v, "error", "OpenNebula's API at x is unreachable"),
     "opennebula api", RED, "is unreachable", 2),
    ("a host in error", lambda h, v, m, ip: v.hosts.update(n2=(one.ERROR, "Error monitoring Host n2 (1): virsh failed")),
     "host n2", RED, "ERROR: Error monitoring Host n2 (1): virsh failed", 1),
    ("a host disabled", lambda h, v, m, ip: v.hosts.update(n3=(one.DISABLED, "")),
     "host n3", AMBER, "disabled (by hand)", 1),
    ("a host offline", lambda h, v, m, ip: v.hosts.update(n3=(one.OFFLINE, "")),
     "host n3", AMBER, "offline (by hand)", 1),
    ("a host not monitored yet", lambda h, v, m, ip: v.hosts.update(n1=(one.INIT, "")),
     "host n1", AMBER, "not monitored yet (INIT)", 1),
    ("a host not registered", lambda h, v, m, ip: v.hosts.pop("n1"),
     "host n1", RED, "not registered in OpenNebula: run onehci deploy", 1),
    ("some hosts monitored", lambda h, v, m, ip: v.hosts.update(n2=(one.ERROR, "")),
     "opennebula hosts", AMBER, "2 of 3 monitored", 1),
    ("no host monitored", lambda h, v, m, ip: v.hosts.update({n: (one.ERROR, "x") for n in v.hosts}),
     "opennebula hosts", RED, "0 of 3 monitored: no VM can run", 2),
    ("a datastore missing", lambda h, v, m, ip: v.datastores.pop("test-images"),
     "datastore test-images", RED, "not registered in OpenNebula", 1),
    ("a datastore not sized yet", lambda h, v, m, ip: v.datastores.update({"test-system": (0, 0)}),
     "datastore test-system", AMBER, "no size reported yet", 1),
    ("a datastore nearly full", lambda h, v, m, ip: v.datastores.update({"test-system": (102400, 1024)}),
     "datastore test-system", RED, "1.0 GiB free of 100.0 GiB (1%)", 1),
    ("MooseFS not mounted on a host", lambda h, v, m, ip: m.update(n3=Mount(False, "MooseFS is not mounted at /x")),
     "mount n3", RED, "MooseFS is not mounted at /x", 1),
]


@pytest.mark.parametrize("what, change, component, colour, words, code", RULES, ids=[r[0] for r in RULES])
def test_each_rule_gives_its_colour_and_exit_code(plan, what, change, component, colour, words, code):
    health, view, mounts = healthy(plan)
    change(health, view, mounts, {n.hostname: n.ip for n in plan.nodes})
    result = status.judge(plan, health, view, mounts)
    found = line(result, component)
    assert (found.colour, result.exit_code) == (colour, code), found
    assert words in found.reason
    # only the line the fault is about, and the host summary a host feeds, leave green
    others = [c for c in result.checks if c.colour != GREEN and c.component != component
              and not (c.component.startswith(("host ", "opennebula hosts")) and "host" in component)]
    assert others == []


def test_an_unreachable_master_or_api_stands_alone(plan):
    health, view, mounts = healthy(plan)
    health.reachable, view.error = False, "OpenNebula's API at x is unreachable"
    result = status.judge(plan, health, view, mounts)
    assert [c.component for c in result.checks if not c.component.startswith("mount")] == \
        ["moosefs master", "opennebula api"]
    assert result.as_dict()["verdict"] == "down" and result.as_dict()["exit_code"] == 2
    assert result.as_dict()["checks"][0] == {"component": "moosefs master", "colour": "red",
                                             "reason": "192.168.10.11 does not answer"}


# --- the mount check ------------------------------------------------------------------


def fake_ssh(tmp_path, body: str) -> list[str]:
    script = tmp_path / "ssh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return [str(script)]


def test_check_mount_reads_findmnt_over_ssh(tmp_path):
    # MooseFS 3.0 under FUSE 3, as seen in the lab
    mounted = fake_ssh(tmp_path, 'echo "$*" > "$(dirname "$0")/argv"; echo "fuse   mfs#mfsmaster:9421"\n')
    assert status.check_mount(mounted, "/var/lib/one/datastores") == Mount(True, "mfs#mfsmaster:9421")
    assert (tmp_path / "argv").read_text() == ("findmnt -n -o FSTYPE,SOURCE --mountpoint /var/lib/one/datastores; "
                                               "found=$?; exit $found\n")
    other = fake_ssh(tmp_path, 'echo "ext4 /dev/vdb1"\n')
    assert status.check_mount(other, "/d") == Mount(False, "/d holds a ext4 filesystem, not MooseFS")
    # the script run for real here, by sh: nothing is mounted at tmp_path
    local = fake_ssh(tmp_path, 'exec sh -c "$1"\n')
    assert status.check_mount(local, str(tmp_path)) == Mount(False, f"MooseFS is not mounted at {tmp_path}")
    refused = fake_ssh(tmp_path, 'echo "ssh: connect to host 10.0.0.9 port 22: Connection refused" >&2; exit 255\n')
    assert status.check_mount(refused, "/m") == Mount(
        False, "cannot check over SSH: ssh: connect to host 10.0.0.9 port 22: Connection refused")
    hung = fake_ssh(tmp_path, "exec sleep 30\n")
    assert status.check_mount(hung, "/m", timeout=0.2) == Mount(False, "cannot check: no answer over SSH within 0.2 s")


def test_check_mount_on_a_kvm_host_asks_systemd_about_libvirtd(tmp_path):
    stopped = fake_ssh(tmp_path, 'echo "$*" > "$(dirname "$0")/argv"; echo "fuse mfs#mfsmaster:9421"; '
                                 'echo "libvirtd:inactive"\n')
    found = status.check_mount(stopped, "/var/lib/one/datastores", libvirt=True)
    assert found == Mount(True, "mfs#mfsmaster:9421", "inactive")
    assert "systemctl is-active libvirtd" in (tmp_path / "argv").read_text()
    checks = {c.component: c for c in status.mount_checks({"n2": found}, "/var/lib/one/datastores")}
    assert checks["mount n2"].colour == GREEN
    assert checks["libvirt n2"] == status.Check("libvirt n2", RED, "libvirtd is not running (inactive): no VM can "
                                                "start or be monitored there")
    running = status.mount_checks({"n2": Mount(False, "MooseFS is not mounted at /d", "active")}, "/d")
    assert [(c.component, c.colour) for c in running] == [("mount n2", RED), ("libvirt n2", GREEN)]
    assert [c.component for c in status.mount_checks({"n1": Mount(True, "x")}, "/d")] == ["mount n1"]  # not a KVM host


def test_ssh_argv_uses_the_sites_identity_and_learns_a_key_only_when_asked():
    argv = remote.ssh_argv("10.0.0.9", "/k/id", "/s/known_hosts", 4.0)
    assert argv[0] == "ssh" and argv[-1] == "root@10.0.0.9"
    assert "StrictHostKeyChecking=yes" in argv and "UserKnownHostsFile=/s/known_hosts" in argv
    assert argv[argv.index("-i") + 1] == "/k/id" and "ConnectTimeout=4" in argv
    assert "-i" not in remote.ssh_argv("10.0.0.9", None, "/s/known_hosts", 4.0)
    assert "StrictHostKeyChecking=accept-new" in remote.ssh_argv("10.0.0.9", None, "/s/k", 4.0, host_keys="accept-new")


def test_gather_runs_every_check_at_once(plan, monkeypatch, tmp_path):
    """Every check waits at a barrier that opens only when all have started: run one after
    the other, they would break it."""
    health, view, mounts = healthy(plan)
    barrier = threading.Barrier(2 + len(mounts), timeout=10)
    seen: list[tuple] = []

    def fake_health(master, timeout):
        seen.append(("mfs", master, timeout))
        barrier.wait()
        return health

    def fake_view(loaded, plan, timeout):
        barrier.wait()
        return view

    def fake_mount(argv, mount, timeout, libvirt=False):
        seen.append(("mount", argv[-1], mount))
        barrier.wait()
        return Mount(True, "mfsmaster:9421")

    monkeypatch.setattr(status.mfs, "health", fake_health)
    monkeypatch.setattr(status, "one_view", fake_view)
    monkeypatch.setattr(status, "check_mount", fake_mount)
    monkeypatch.setenv("ONEHCI_STATE_DIR", str(tmp_path / "state"))
    site = tmp_path / "site.yml"
    site.write_text(BASE_SITE)
    result = status.gather(sitefile.load(site), plan, timeout=2.5)
    assert result.exit_code == 0 and result.seconds < 10
    assert ("mfs", "192.168.10.11", 2.5) in seen
    assert sorted(s[1] for s in seen if s[0] == "mount") == sorted(f"root@{n.ip}" for n in plan.nodes)


# --- the verb ------------------------------------------------------------------------


@pytest.fixture
def canned(monkeypatch, plan):
    """status.gather answering from a list of canned results, one per call."""
    results: list[status.Status] = []
    calls: list[int] = []

    def gather(loaded, _plan, **_):
        calls.append(1)
        if len(calls) > len(results):
            raise KeyboardInterrupt  # Ctrl-C once the canned rounds are out
        return results[len(calls) - 1]

    monkeypatch.setattr(status, "gather", gather)
    return results, calls


def test_status_verb_prints_one_line_per_component_and_exits_with_the_verdict(canned, plan, write_site):
    health, view, mounts = healthy(plan)
    view.hosts["n2"] = (one.ERROR, "Error monitoring Host n2 (1): boom")
    canned[0].append(status.judge(plan, health, view, mounts, 0.42))
    result = CliRunner().invoke(cli, ["status", str(write_site())], catch_exceptions=False)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 17
    assert lines[0].split() == ["green", "moosefs", "master", "MooseFS", "3.0.117", "at", "192.168.10.11"]
    assert any(ln.split()[:3] == ["red", "host", "n2"] and ln.endswith("ERROR: Error monitoring Host n2 (1): boom")
               for ln in lines)
    assert lines[-1] == "degraded (exit 1) in 0.4 s"


def test_status_verb_json(canned, plan, write_site):
    health, view, mounts = healthy(plan)
    health.reachable = False
    canned[0].append(status.judge(plan, health, view, mounts, 1.0))
    result = CliRunner().invoke(cli, ["status", "--json", str(write_site())], catch_exceptions=False)
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["verdict"] == "down" and data["exit_code"] == 2
    assert data["checks"][0]["component"] == "moosefs master" and data["checks"][0]["colour"] == "red"


def test_status_watch_redraws_until_ctrl_c_and_exits_with_the_last_verdict(canned, plan, write_site):
    health, view, mounts = healthy(plan)
    canned[0].append(status.judge(plan, health, view, mounts))
    mounts["n1"] = Mount(False, "MooseFS is not mounted at /var/lib/one/datastores")
    canned[0].append(status.judge(plan, health, view, mounts))
    result = CliRunner().invoke(cli, ["status", "--watch", "--every", "0", "--json", str(write_site())],
                                catch_exceptions=False)
    assert len(canned[1]) == 3 and result.exit_code == 1
    rounds = [json.loads(ln) for ln in result.stdout.splitlines()]
    assert [r["verdict"] for r in rounds] == ["healthy", "degraded"]
    canned[1].clear()
    result = CliRunner().invoke(cli, ["status", "--watch", "--every", "0", str(write_site())], catch_exceptions=False)
    assert result.exit_code == 1 and "degraded (exit 1)" in result.stdout


def test_status_timeout_reaches_every_check_and_is_bounded(canned, plan, write_site, monkeypatch):
    health, view, mounts = healthy(plan)
    seen: list = []
    original = status.gather
    monkeypatch.setattr(status, "gather", lambda loaded, _plan, **kw: seen.append(kw) or original(loaded, _plan, **kw))
    canned[0].extend([status.judge(plan, health, view, mounts)] * 2)
    site = str(write_site())
    assert CliRunner().invoke(cli, ["status", site], catch_exceptions=False).exit_code == 0
    assert CliRunner().invoke(cli, ["status", "--timeout", "30", site], catch_exceptions=False).exit_code == 0
    assert seen == [{"timeout": status.TIMEOUT}, {"timeout": 30.0}]  # the CLI's default is the module's
    refused = CliRunner().invoke(cli, ["status", "--timeout", "0", site])
    assert refused.exit_code == 2 and "--timeout" in refused.output and len(seen) == 2
