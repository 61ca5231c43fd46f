"""Taking a node out (rebuild, removal): one test per rule, on canned MooseFS health, with the
exact reason the technician reads; and what is at risk when a node's chunk copies are gone."""

from __future__ import annotations

import json

import pytest

from installer import mfs, sitefile
from installer.errors import OnehciError
from installer.plan import make_plan
from installer.preflight import at_risk, take_out
from tests.conftest import BASE_SITE

N1_ROLES = "roles: [frontend, mfs_master, kvm, mfs_chunkserver]"
LOGGER_ROLES = "roles: [kvm, mfs_chunkserver, mfs_metalogger]"  # n2 and n3


@pytest.fixture
def plan_of(tmp_path):
    def make(text: str = BASE_SITE):
        path = tmp_path / "site.yml"
        path.write_text(text)
        return make_plan(sitefile.load(path).site)

    return make


@pytest.fixture
def plan(plan_of):
    return plan_of()


@pytest.fixture
def master_apart(plan_of):
    """n2 is the master (and no metalogger), n1 only the frontend: the master may be taken out."""
    return plan_of(BASE_SITE.replace(N1_ROLES, "roles: [frontend, kvm, mfs_chunkserver]")
                   .replace(LOGGER_ROLES, "roles: [mfs_master, kvm, mfs_chunkserver]", 1))


def healthy(plan, **changes) -> mfs.Health:
    ip = {n.hostname: n.ip for n in plan.nodes}
    health = mfs.Health(master=plan.moosefs.master_ip, version="3.0.117", reachable=True,
                        chunkservers=[mfs.Chunkserver(ip[n], 9422, "3.0.117", False, 10, 1, 2)
                                      for n in ("n1", "n2", "n3")],
                        metaloggers=[ip[n] for n in plan.moosefs.metaloggers],
                        chunks={"missing": 0, "endangered": 0, "undergoal": 0, "stable": 40})
    for key, value in changes.items():
        setattr(health, key, value)
    return health


def without(plan, health, *names):
    """The chunkservers of HEALTH but those of NAMES (stopped, dead)."""
    gone = {plan.node(n).ip for n in names}
    return [c for c in health.chunkservers if c.ip not in gone]


def test_a_chunkserver_may_go_when_the_others_keep_the_goal(plan):
    found = take_out(plan, healthy(plan), "n3")
    assert (found.allowed, found.refusals, found.notes) == (True, [], [])
    assert found.risk.summary == ["n3 holds 10 chunk copies; a drain copies them to the other chunkservers "
                                  "before it goes"]
    assert json.loads(json.dumps(found.as_dict()))["risk"]["copies"] == 10


def test_the_frontend_is_refused(plan):
    found = take_out(plan, healthy(plan), "n1")
    assert found.refusals == [
        "n1 is the OpenNebula frontend: rebuilding it means reinstalling oned and losing its database "
        "(/var/lib/one/one.db: every VM, image, host and network definition) and oneadmin's SSH keys, which onehci "
        "cannot back up and restore yet; it does not rebuild a frontend"]


@pytest.mark.parametrize("loggers_on", [[], ["n2"]])  # a metalogger on the master itself is no copy elsewhere
def test_the_only_master_without_a_metalogger_elsewhere_is_refused(master_apart, loggers_on):
    health = healthy(master_apart, metaloggers=[master_apart.node(n).ip for n in loggers_on])
    assert take_out(master_apart, health, "n2").refusals == [
        "n2 is the MooseFS master and no metalogger on another node is connected: its metadata (every file's name "
        "and where its chunks are) would have no copy anywhere while it is out; connect one first (role "
        "mfs_metalogger on another node, then onehci deploy)"]


def test_a_master_with_a_metalogger_elsewhere_may_go_and_the_downtime_is_said(master_apart):
    found = take_out(master_apart, healthy(master_apart, metaloggers=[master_apart.node("n3").ip]), "n2")
    assert found.allowed
    assert found.notes == ["n2 is the MooseFS master: the whole filesystem (every VM disk) stops while it is out, "
                           "and its metadata comes back from the metalogger on n3"]


def test_a_chunkserver_whose_loss_breaks_the_goal_is_refused(plan):
    health = healthy(plan)
    health.chunkservers = without(plan, health, "n2")
    assert take_out(plan, health, "n3").refusals == [
        "n3 is a chunkserver, and without it 1 chunkserver is connected (n1), fewer than storage.goal 2: MooseFS "
        "could not keep 2 copies of every chunk; bring back or add a chunkserver first"]


def test_a_chunkserver_in_maintenance_does_not_count_and_an_unknown_one_does(plan):
    health = healthy(plan)
    n2 = plan.node("n2").ip
    health.chunkservers = [c if c.ip != n2 else mfs.Chunkserver(n2, 9422, "3.0.117", True, 10, 1, 2)
                           for c in health.chunkservers]
    assert take_out(plan, health, "n3").refusals == [
        "n3 is a chunkserver, and without it 1 chunkserver is connected (n1; n2 in maintenance, not counted), "
        "fewer than storage.goal 2: MooseFS could not keep 2 copies of every chunk; bring back or add a "
        "chunkserver first"]
    health.chunkservers.append(mfs.Chunkserver("192.168.10.99", 9422, "3.0.117", False, 3, 1, 2))
    assert take_out(plan, health, "n3").allowed


def test_missing_chunks_refuse_taking_out_a_live_node(plan):
    health = healthy(plan, chunks={"missing": 3, "endangered": 0, "undergoal": 0, "stable": 37})
    assert take_out(plan, health, "n3").refusals == [
        "MooseFS already has 3 missing chunks (no copy left): the files using them cannot be read, and taking n3 "
        "out now could lose more; bring back the chunkserver that holds them first (onehci status names the "
        "chunkservers that are missing)"]


def test_missing_chunks_with_a_dead_chunkserver_point_at_its_disks(plan):
    health = healthy(plan, chunks={"missing": 1, "endangered": 5, "undergoal": 0, "stable": 34})
    health.chunkservers = without(plan, health, "n3")
    found = take_out(plan, health, "n3")
    assert found.refusals == [
        "MooseFS has 1 missing chunk (no copy left) and n3's chunkserver is not connected: the only copies may be on "
        "its chunk disks; bring n3 back as it is (or its disks into another chunkserver) before rebuilding it"]
    assert found.risk.summary == [
        "1 chunk missing: no copy left; the files using them cannot be read, and are lost for good unless n3's chunk "
        "disks come back",
        "5 chunks endangered: one copy left, one more failed disk or node loses them; MooseFS is copying them"]


def test_an_unreachable_master_refuses_everything(plan):
    health = mfs.Health(master="192.168.10.11", reachable=False,
                        error="MooseFS master 192.168.10.11 does not answer on port 9421")
    found = take_out(plan, health, "n3")
    assert found.refusals == [
        "MooseFS master 192.168.10.11 does not answer on port 9421: onehci cannot tell which chunk copies are left; "
        "if n1 is lost, its metadata must be recovered from a metalogger first"]
    assert (found.risk.known, found.risk.summary) == (
        False, ["unknown: MooseFS master 192.168.10.11 does not answer on port 9421"])


def test_what_a_dead_node_puts_at_risk(plan):
    health = healthy(plan, chunks={"missing": 0, "endangered": 4, "undergoal": 2, "stable": 34})
    health.chunkservers = without(plan, health, "n3")
    risk = at_risk(plan, health, "n3")
    assert (risk.alive, risk.copies, risk.endangered, risk.undergoal) == (False, 0, 4, 2)
    assert risk.summary == [
        "4 chunks endangered: one copy left, one more failed disk or node loses them; MooseFS is copying them",
        "2 chunks undergoal: fewer than 2 copies but more than one; MooseFS is copying them"]
    health.chunks = {"missing": 0, "endangered": 0, "undergoal": 0, "stable": 40}
    assert at_risk(plan, health, "n3").summary == [
        "nothing is at risk: every chunk has its 2 copies on the other chunkservers"]


def test_a_node_without_chunks_puts_nothing_at_risk_and_the_only_kvm_host_is_said(plan_of):
    plan = plan_of(BASE_SITE.replace(LOGGER_ROLES, "roles: [mfs_chunkserver, mfs_metalogger]")
                   .replace(N1_ROLES, "roles: [frontend, mfs_master, kvm]")
                   .replace("    chunk_disks: [{serial: C1}]\n", ""))
    health = healthy(plan)
    health.chunkservers = without(plan, health, "n1")
    found = take_out(plan, health, "n1")
    assert found.risk.summary == ["n1 keeps no chunks: no data depends on it"]
    assert found.notes[0] == "n1 is the only KVM host: its VMs cannot move away and stop while it is out"


def test_a_node_not_in_the_site_is_an_error(plan):
    with pytest.raises(OnehciError, match=r"^n9 is not a node of the site \(its nodes: n1, n2, n3\)$"):
        take_out(plan, healthy(plan), "n9")
