"""The pure parts of `onehci upgrade`: the order of the nodes, apt's simulated upgrade read back,
which status lines stop an upgrade, when a node's upgrade waits for a chunk loop, and the
preflight's new monitoring round."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import pytest

from installer import sitefile, status
from installer.cli.main import cli
from installer.operations import upgrade
from installer.plan import make_plan
from tests.conftest import BASE_SITE

APT_OUTPUT = """\
Reading package lists...
Building dependency tree...
Reading state information...
Calculating upgrade...
The following packages have been kept back:
  linux-image-amd64 qemu-system-x86
The following packages will be upgraded:
  bash libgcrypt20 opennebula-node-kvm python3-jwt
4 upgraded, 0 newly installed, 0 to remove and 2 not upgraded.
Inst bash [5.2.15-2+b8] (5.2.15-2+b13 Debian:12.15/oldstable [amd64])
Inst libgcrypt20 [1.10.1-3] (1.10.1-3+deb12u1 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64]) []
Inst opennebula-node-kvm [7.0.2-1~onehci1] (7.0.2-1~onehci2 onehci lab:stable [all])
Inst python3-jwt [2.6.0-1] (2.6.0-1+deb12u1 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [all])
Conf bash (5.2.15-2+b13 Debian:12.15/oldstable [amd64])
Conf libgcrypt20 (1.10.1-3+deb12u1 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64])
Conf opennebula-node-kvm (7.0.2-1~onehci2 onehci lab:stable [all])
Conf python3-jwt (2.6.0-1+deb12u1 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [all])
"""


def test_simulation_lists_every_package_with_both_versions_and_what_is_kept_back():
    sim = upgrade.parse_simulation(APT_OUTPUT)
    assert [(p.package, p.installed, p.candidate) for p in sim.packages] == [
        ("bash", "5.2.15-2+b8", "5.2.15-2+b13"),
        ("libgcrypt20", "1.10.1-3", "1.10.1-3+deb12u1"),
        ("opennebula-node-kvm", "7.0.2-1~onehci1", "7.0.2-1~onehci2"),
        ("python3-jwt", "2.6.0-1", "2.6.0-1+deb12u1"),
    ]
    assert sim.packages[1].origin == "Debian:12.15/oldstable, Debian-Security:12/oldstable-security"
    assert sim.packages[2].origin == "onehci lab:stable"
    assert sim.kept_back == ["linux-image-amd64", "qemu-system-x86"]
    assert sim.packages[2].line() == "opennebula-node-kvm 7.0.2-1~onehci1 -> 7.0.2-1~onehci2"


def test_simulation_of_an_up_to_date_node_is_empty():
    text = "Reading package lists...\nCalculating upgrade...\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n"
    assert upgrade.parse_simulation(text).as_dict() == {"packages": [], "kept_back": []}


def test_a_package_new_to_the_node_has_no_installed_version():
    sim = upgrade.parse_simulation("Inst libfoo1 (1.2-1 Debian:12.15/oldstable [amd64])\n")
    assert [(p.package, p.installed, p.candidate) for p in sim.packages] == [("libfoo1", "", "1.2-1")]
    assert sim.packages[0].line() == "libfoo1 (new) -> 1.2-1"


def _plan(write_site, text: str):
    return make_plan(sitefile.load(write_site(text)).site)


def test_order_master_and_frontend_last(write_site):
    plan = _plan(write_site, BASE_SITE)
    names = [n.hostname for n in plan.nodes]
    assert upgrade.order(plan)[-1] == plan.opennebula.frontend == plan.moosefs.master
    assert sorted(upgrade.order(plan)) == sorted(names) and len(set(upgrade.order(plan))) == len(names)


def test_order_master_before_frontend_when_they_are_two_nodes():
    """The plain nodes by name whatever their order in the file, then the master, then the frontend."""

    class Node:
        def __init__(self, hostname):
            self.hostname = hostname

    class Plan:
        nodes = [Node(h) for h in ("zeta", "master", "alpha", "front", "mid")]
        moosefs = SimpleNamespace(master="master")
        opennebula = SimpleNamespace(frontend="front")

    assert upgrade.order(Plan) == ["alpha", "mid", "zeta", "master", "front"]
    assert [upgrade.step_name(n) for n in upgrade.order(Plan)][-1] == "upgrade front"


def _status(*checks):
    return status.Status([status.Check(c, colour, "why") for c, colour in checks])


def test_free_space_does_not_block_an_upgrade_but_anything_else_does():
    result = _status(("moosefs master", "green"), ("moosefs space", "amber"), ("datastore upg-system", "red"),
                     ("host upg2", "red"), ("opennebula hosts", "amber"), ("mount upg1", "green"))
    assert [c.component for c in upgrade.blocking(result)] == ["host upg2", "opennebula hosts"]
    # the node an interrupted upgrade stopped at may be the one in error or disabled
    assert upgrade.blocking(result, allow_host="upg2") == []
    assert [c.component for c in upgrade.blocking(result, allow_host="upg1")] == ["host upg2"]


def test_restart_script_restarts_only_running_units_of_the_upgraded_packages():
    script = upgrade.unit_script(["opennebula", "moosefs-chunkserver"])
    assert "dpkg -L \"$p\"" in script and "opennebula moosefs-chunkserver" in script
    assert "systemctl is-active --quiet" in script and "try-restart" in script
    # the sed expression picks service units shipped in /lib or /usr/lib, not templates
    listing = "/lib/systemd/system/opennebula.service\n/usr/lib/systemd/system/x@.service\n" \
              "/usr/lib/systemd/system/moosefs-chunkserver.service\n/etc/one/oned.conf\n"
    sed = script.split("| sed -n ")[1].split(" | sort")[0]
    found = subprocess.run(f"sed -n {sed}", shell=True, input=listing, capture_output=True, text=True)
    assert found.stdout.split() == ["opennebula.service", "moosefs-chunkserver.service"]


MASTER_NODE = SimpleNamespace(hostname="upg1", ip="10.0.0.5", roles=["frontend", "mfs_master", "mfs_chunkserver"])


def test_only_a_restarted_master_or_chunkserver_makes_the_upgrade_wait_for_a_chunk_loop():
    kept = {"moosefs-master": "9f1c", "moosefs-chunkserver": "77ab"}

    def reason(before, after, node=MASTER_NODE, upgraded=True, resumed=False):
        return upgrade.chunk_loop_reason(node, upgraded=upgraded, resumed=resumed, before=before, after=after)

    assert reason(kept, dict(kept)) is None  # an OpenNebula upgrade: MooseFS untouched
    assert "started again" in reason(kept, {**kept, "moosefs-chunkserver": "e012"})
    assert "started again" in reason(kept, {**kept, "moosefs-master": ""})  # stopped: no invocation
    assert "did not say" in reason(None, kept) and "did not say" in reason(kept, None)  # no answer over SSH
    assert reason({}, {}, upgraded=False) is None  # nothing to upgrade: only its health is checked
    # an interrupted attempt may have restarted MooseFS after its last look: always a loop
    assert "earlier attempt" in reason({}, {}, upgraded=False, resumed=True)
    assert "earlier attempt" in reason(kept, dict(kept), resumed=True)
    # a node with neither (a metalogger holds no chunk) never waits
    plain = SimpleNamespace(hostname="n", ip="10.0.0.6", roles=["kvm", "mfs_metalogger"])
    assert reason(None, None, node=plain) is None and reason({}, {}, node=plain, resumed=True) is None


def test_the_node_upgrade_reads_the_units_around_apt_and_waits_for_a_loop_only_after_a_restart(monkeypatch):
    """upgrade_node's wiring, on a MooseFS master that is no OpenNebula host: the IDs read before
    apt-get upgrade and after the restarts, and the chunk wait given a start time only when they differ."""
    events = []
    plan = SimpleNamespace(node=lambda _name: MASTER_NODE, opennebula=SimpleNamespace(hosts=[]),
                           moosefs=SimpleNamespace(master_ip="10.0.0.5", chunkservers=["upg1"]))
    sim = upgrade.Simulation([upgrade.Pending("moosefs-master", "3.0.117-1", "3.0.118-1")])
    monkeypatch.setattr(upgrade, "simulate", lambda _l, _n: sim)
    monkeypatch.setattr(upgrade, "_apply", lambda *_a: events.append("apt") or [])
    monkeypatch.setattr(upgrade, "_wait_units", lambda *_a: None)
    monkeypatch.setattr(upgrade, "_wait_status", lambda *_a: status.Status([]))
    monkeypatch.setattr(upgrade.mfs, "master_time", lambda _m: 1234.5)
    monkeypatch.setattr(upgrade.storage, "wait_safe", lambda _m, *, since, **_k: events.append(("chunks", since)))

    def upgraded(ids_seen, **kw):
        events.clear()
        seen = iter(ids_seen)
        monkeypatch.setattr(upgrade, "invocations", lambda _l, _n: events.append("ids") or next(seen))
        record = upgrade.upgrade_node(None, plan, "upg1", say=lambda _t: None, **kw)
        return record["chunk_loop_awaited"], events

    kept = {"moosefs-master": "9f1c", "moosefs-chunkserver": "77ab"}
    assert upgraded([kept, dict(kept)]) == (False, ["ids", "apt", "ids", ("chunks", None)])
    restarted = {**kept, "moosefs-master": "0d2e"}
    assert upgraded([kept, restarted]) == (True, ["ids", "apt", "ids", ("chunks", 1234.5)])
    assert upgraded([kept, dict(kept)], resumed=True) == (True, ["ids", "apt", "ids", ("chunks", 1234.5)])
    sim = upgrade.Simulation([])  # nothing left to upgrade: no apt, no look at the units
    assert upgraded([]) == (False, [("chunks", None)])
    assert upgraded([], resumed=True) == (True, [("chunks", 1234.5)])


def test_invocations_ask_the_node_for_its_master_and_chunkserver_only(monkeypatch):
    asked = []

    def run(_loaded, ip, script, *, timeout):
        asked.append((ip, script))
        return subprocess.CompletedProcess([], answer[0], answer[1], "")

    monkeypatch.setattr(upgrade.remote, "run", run)
    node = SimpleNamespace(ip="10.0.0.5", roles=["mfs_master", "mfs_metalogger", "mfs_chunkserver", "kvm"])
    answer = (0, "")
    upgrade.invocations(None, node)
    assert asked[0][0] == "10.0.0.5" and "for u in moosefs-master moosefs-chunkserver;" in asked[0][1]
    # the script's own output, run here with a stand-in systemctl: one line per unit, a stopped one empty
    fake = f"systemctl() {{ [ \"$5\" = moosefs-master ] && echo 9f1c; [ \"$5\" = moosefs-chunkserver ] || return 0; }}; "
    answer = (0, subprocess.run(["sh", "-c", fake + asked[0][1]], capture_output=True, text=True).stdout)
    assert answer[1] == "moosefs-master 9f1c\nmoosefs-chunkserver \n"
    assert upgrade.invocations(None, node) == {"moosefs-master": "9f1c", "moosefs-chunkserver": ""}
    answer = (255, "")  # no answer over SSH: counted as restarted by the caller
    assert upgrade.invocations(None, node) is None
    answer = (0, "moosefs-master 9f1c\n")  # one unit short: not trusted either
    assert upgrade.invocations(None, node) is None
    asked.clear()
    assert upgrade.invocations(None, SimpleNamespace(ip="10.0.0.6", roles=["frontend", "mfs_metalogger"])) == {}
    assert asked == []


def test_cli_help_and_a_missing_site(tmp_path):
    from click.testing import CliRunner

    runner = CliRunner()
    assert "--check" in runner.invoke(cli, ["upgrade", "--help"]).output
    result = runner.invoke(cli, ["upgrade", str(tmp_path / "nope.yml")])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_a_refused_upgrade_still_prints_json_for_scripts(write_site, monkeypatch):
    from click.testing import CliRunner

    from installer.errors import OnehciError

    def refuse(*_a, **_k):
        raise OnehciError("the cloud is not healthy, nothing was upgraded: lab2 chunkserver not connected")

    monkeypatch.setattr(upgrade, "run", refuse)
    result = CliRunner().invoke(cli, ["upgrade", "--json", str(write_site(BASE_SITE))])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and "lab2 chunkserver not connected" in report["error"]
    assert "error: the cloud is not healthy" in result.stderr


def test_preflight_gives_hosts_in_error_a_monitoring_round_but_nothing_else(monkeypatch):
    rounds = iter([_status(("host upg1", "red"), ("opennebula hosts", "amber")),
                   _status(("host upg1", "green"), ("opennebula hosts", "green"))])
    monkeypatch.setattr(status, "gather", lambda *_a: next(rounds))
    monkeypatch.setattr(upgrade.time, "sleep", lambda _s: None)
    asked: list[list[str]] = []
    monkeypatch.setattr(upgrade, "_monitor_again", lambda _loaded, _plan, names: asked.append(names))
    said: list[str] = []
    result = upgrade.preflight(None, None, say=said.append)
    assert [c.colour for c in result.checks] == ["green", "green"]
    assert said == ["asking OpenNebula for a new monitoring round and waiting up to 90 s: host upg1: why; "
                    "opennebula hosts: why"]
    assert asked == [["upg1", "opennebula hosts"]]  # (only hosts in ERROR are asked: _monitor_again looks)
    # anything else refuses at once, and hosts that stay in error refuse after the wait
    monkeypatch.setattr(status, "gather", lambda *_a: _status(("host upg1", "red"), ("moosefs master", "red")))
    with pytest.raises(upgrade.OnehciError, match="no node is upgraded: host upg1: why; moosefs master: why"):
        upgrade.preflight(None, None, say=said.append)
    monkeypatch.setattr(status, "gather", lambda *_a: _status(("host upg1", "red")))
    with pytest.raises(upgrade.OnehciError, match="no node is upgraded: host upg1: why"):
        upgrade.preflight(None, None, say=said.append, settle=0.05)
