"""installer/one.py against the lab's OpenNebula stand-in run on 127.0.0.1: registration
read back through pyone, idempotence, drift reported and left alone, the wait for hosts to
be monitored, and connection errors that never show the password."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading

import pyone
import pytest

from installer import one, state
from installer.errors import OnehciError
from tests.standin_daemon import FLAG_VIRSH, PASSWORD, set_password_file, wait_for


def test_object_names_derive_from_the_cluster():
    assert one.object_names("dijon") == {"cluster": "dijon", "system": "dijon-system",
                                         "images": "dijon-images", "network": "dijon-vms"}


def test_first_run_creates_the_cloud_as_read_back_through_pyone(cloud):
    report = cloud.register()
    assert [(o.kind, o.name, o.outcome) for o in report.objects] == [
        ("cluster", "test", "created"), ("host", "n1", "created"), ("host", "n2", "created"),
        ("host", "n3", "created"), ("datastore", "test-system", "created"),
        ("datastore", "test-images", "created"), ("network", "test-vms", "created")]
    assert report.as_dict()["created"] == 7 and report.as_dict()["drift"] == 0
    client = cloud.client
    (cluster,) = [c for c in client.clusterpool.info().CLUSTER if c.NAME == "test"]
    ids = {o.name: o.id for o in report.objects}
    assert cluster.ID == ids["test"]
    assert sorted(cluster.HOSTS.ID) == sorted(ids[h] for h in ("n1", "n2", "n3"))
    assert sorted(cluster.DATASTORES.ID) == sorted([ids["test-system"], ids["test-images"]])
    assert cluster.VNETS.ID == [ids["test-vms"]]
    for name in ("n1", "n2", "n3"):
        host = client.host.info(ids[name])
        assert (host.NAME, host.IM_MAD, host.VM_MAD, host.CLUSTER_ID) == (name, "kvm", "kvm", cluster.ID)
    mount = cloud.plan.moosefs["mount"]
    system = client.datastore.info(ids["test-system"])
    assert (system.TYPE, system.TM_MAD) == (1, "shared")
    image = client.datastore.info(ids["test-images"])
    assert (image.TYPE, image.TM_MAD, image.DS_MAD) == (0, "shared", "fs")
    for ds in (system, image):
        assert os.path.normpath(ds.BASE_PATH) == f"{mount}/{ds.ID}" and ds.CLUSTERS.ID == [cluster.ID]
    vnet = client.vn.info(ids["test-vms"])
    assert (vnet.VN_MAD, vnet.BRIDGE, vnet.CLUSTERS.ID) == ("bridge", "br0", [cluster.ID])
    (ar,) = vnet.AR_POOL.AR
    assert (ar.TYPE, ar.IP, ar.SIZE) == ("IP4", "192.168.20.10", 100)
    assert vnet.TEMPLATE["GATEWAY"] == "192.168.20.1" and vnet.TEMPLATE["DNS"] == "192.168.20.2 192.168.20.3"
    assert (vnet.TEMPLATE["NETWORK_ADDRESS"], vnet.TEMPLATE["NETWORK_MASK"]) == ("192.168.20.0", "255.255.255.0")
    assert "OpenNebula: datastore test-images (id 101): created" in cloud.said
    assert cloud.said[-1] == "OpenNebula: 7 created, 0 unchanged, 0 with drift"


def test_second_run_creates_nothing(cloud):
    first = cloud.register()
    pools = lambda c: (len(c.clusterpool.info().CLUSTER), len(c.hostpool.info().HOST),  # noqa: E731
                       len(c.datastorepool.info().DATASTORE), len(c.vnpool.info(-2, -1, -1).VNET))
    before = pools(cloud.client)
    cloud.said.clear()
    second = cloud.register()
    assert [o.outcome for o in second.objects] == ["existing"] * 7
    assert [(o.kind, o.name, o.id) for o in second.objects] == [(o.kind, o.name, o.id) for o in first.objects]
    assert pools(cloud.client) == before == (2, 3, 5, 1)
    assert cloud.said == ["OpenNebula: 0 created, 7 unchanged, 0 with drift"]


def test_drift_is_reported_and_left_as_it_is(cloud):
    ids = {o.name: o.id for o in cloud.register().objects}
    client = cloud.client
    client.datastore.update(ids["test-images"], 'TM_MAD = "ssh"', 1)
    client.vn.update(ids["test-vms"], 'BRIDGE = "br9"', 1)
    client.cluster.addhost(0, ids["n2"])  # moved to the default cluster by hand
    cloud.said.clear()
    report = cloud.register()
    drift = {o.name: o.drift for o in report.of("drift")}
    assert drift == {"test-images": ["TM_MAD is ssh, onehci sets shared"],
                     "n2": [f"in cluster default (0), not test ({ids['test']})"],
                     "test-vms": ["BRIDGE is br9, onehci sets br0"]}
    assert report.as_dict()["drift"] == 3 and report.as_dict()["created"] == 0
    assert f"OpenNebula: datastore test-images (id {ids['test-images']}): drift: TM_MAD is ssh, " \
           "onehci sets shared; left as it is" in cloud.said
    # nothing was put back
    assert client.datastore.info(ids["test-images"]).TM_MAD == "ssh"
    assert client.vn.info(ids["test-vms"]).BRIDGE == "br9"
    assert client.host.info(ids["n2"]).CLUSTER_ID == 0


def test_a_datastore_off_the_mount_is_drift(cloud):
    plan = dataclasses.replace(cloud.plan, moosefs={**cloud.plan.moosefs, "mount": "/var/lib/one/datastores"})
    report = one.register(cloud.loaded, plan, cloud.client, cloud.said.append)
    (system, images) = [o for o in report.objects if o.kind == "datastore"]
    assert system.created and system.outcome == "drift"
    assert system.drift == [f"BASE_PATH {cloud.daemon.location}/100 is not /var/lib/one/datastores/100 "
                            "on the MooseFS mount (DATASTORE_LOCATION in oned.conf)"]


def test_limit_registers_only_the_named_hosts(cloud):
    report = cloud.register(hosts=["n3"])
    assert [o.name for o in report.objects if o.kind == "host"] == ["n3"]
    assert [h.NAME for h in cloud.client.hostpool.info().HOST] == ["n3"]


def test_wait_monitored_names_the_host_and_opennebulas_error(cloud):
    cloud.break_host("n2", "error: failed to connect to the hypervisor")
    cloud.register()
    said: list[str] = []
    with pytest.raises(OnehciError) as caught:
        one.wait_monitored(cloud.client, ["n1", "n2", "n3"], timeout=20, say=said.append, interval=0.05)
    message = str(caught.value)
    assert message.startswith("host n2 is in ERROR: ")
    assert "Error monitoring Host n2 (1): virsh -c qemu:///system list failed: " \
           "error: failed to connect to the hypervisor" in message
    assert "n1" not in message and "n3" not in message


def test_wait_monitored_succeeds_once_the_host_is_mended(cloud):
    cloud.break_host("n2", "error: failed to connect to the hypervisor")
    ids = {o.name: o.id for o in cloud.register().objects}
    client = cloud.client
    wait_for(lambda: client.host.info(ids["n2"]).STATE == one.ERROR, "n2 in ERROR")
    cloud.mend_host("n2")
    said: list[str] = []
    # n2's error predates the wait: the next monitoring round decides
    states = one.wait_monitored(client, ["n1", "n2", "n3"], timeout=20, say=said.append, interval=0.05)
    assert states == {"n1": "MONITORED", "n2": "MONITORED", "n3": "MONITORED"}
    assert said[0] == "OpenNebula: waiting up to 20 s for 3 host(s) to be monitored"
    assert sorted(said[1:]) == [f"OpenNebula: host {h} monitored" for h in ("n1", "n2", "n3")]


def test_wait_monitored_times_out_with_the_last_error(standin, tmp_path):
    (tmp_path / "fake/bin/virsh").write_text(FLAG_VIRSH)
    (tmp_path / "fake/broken-slow").write_text("error: libvirtd is not running\n")
    daemon = standin("--monitor-interval", "3600", location="/")  # probed once, when added
    client = daemon.one()
    host = client.host.allocate("slow", "kvm", "kvm", -1)
    wait_for(lambda: client.host.info(host).STATE == one.ERROR, "slow in ERROR")
    with pytest.raises(OnehciError, match=r"^host slow is not monitored after 0 s \(state ERROR: .*"
                                          r"Error monitoring Host slow \(0\): .*libvirtd is not running"):
        one.wait_monitored(client, ["slow"], timeout=0.3, say=lambda _: None, interval=0.05)


def test_wait_monitored_skips_disabled_hosts_and_fails_on_unknown_ones(cloud):
    ids = {o.name: o.id for o in cloud.register().objects}
    cloud.client.host.status(ids["n3"], 1)
    said: list[str] = []
    states = one.wait_monitored(cloud.client, ["n1", "n3"], timeout=20, say=said.append, interval=0.05)
    assert states["n3"] == "DISABLED" and "OpenNebula: host n3 is DISABLED (set by hand): not waited for" in said
    with pytest.raises(OnehciError, match="^host n9 is not registered in OpenNebula$"):
        one.wait_monitored(cloud.client, ["n9"], timeout=1, say=said.append)


# --- the connection ------------------------------------------------------------------


def test_client_for_connects_as_oneadmin(cloud):
    client = one.client_for(cloud.loaded, cloud.plan)
    assert client.user.info(-1).NAME == "oneadmin"


def test_no_password_file_is_a_clear_error_and_none_is_made(cloud):
    path = state.oneadmin_password_file(cloud.loaded.path)
    path.unlink()
    with pytest.raises(OnehciError, match=rf"^no oneadmin password in {path}: deploy the site first"):
        one.client_for(cloud.loaded, cloud.plan)
    assert not path.exists()


def test_wrong_password_is_a_clear_error_without_the_password(cloud):
    wrong = "not-the-Pw-42"
    set_password_file(cloud.loaded, wrong)
    with pytest.raises(OnehciError) as caught:
        one.client_for(cloud.loaded, cloud.plan)
    message = str(caught.value)
    assert message == (f"OpenNebula's API at {cloud.daemon.url} refused the password in "
                       f"{state.oneadmin_password_file(cloud.loaded.path)}: it is not the one oned took at its "
                       "first start (/var/lib/one/.one/one_auth on the frontend)")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert wrong not in message and PASSWORD not in message


def test_unreachable_api_is_a_clear_error(cloud, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.setattr(one, "api_url", lambda _plan: f"http://127.0.0.1:{port}/RPC2")
    with pytest.raises(OnehciError, match=rf"^OpenNebula's API at http://127.0.0.1:{port}/RPC2 is unreachable "
                                          r"\(connection refused\): is the opennebula service running"):
        one.client_for(cloud.loaded, cloud.plan)


def test_an_api_that_never_answers_times_out(cloud, monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts (the kernel does) and never answers
    port = listener.getsockname()[1]
    monkeypatch.setattr(one, "api_url", lambda _plan: f"http://127.0.0.1:{port}/RPC2")
    done = threading.Event()
    try:
        with pytest.raises(OnehciError, match="did not answer in time"):
            one.client_for(cloud.loaded, cloud.plan, timeout=0.3)
        done.set()
    finally:
        listener.close()
    assert done.is_set()


def test_errors_never_carry_the_session():
    one._secrets.add("pa$$-w0rd")
    with pytest.raises(OnehciError) as caught:
        with one.api_errors("http://10.0.0.1:2633/RPC2"):
            raise pyone.OneException("<Fault -501: 'wrong parameters calling one.x: oneadmin:pa$$-w0rd, 7'>")
    assert str(caught.value) == ("OpenNebula's API at http://10.0.0.1:2633/RPC2: <Fault -501: 'wrong parameters "
                                 "calling one.x: oneadmin:***, 7'>")
    assert one.scrub("a pa$$-w0rd b, oneadmin:other c") == "a *** b, oneadmin:*** c"


# --- deploy --------------------------------------------------------------------------


@pytest.fixture
def deploy_run(cloud, monkeypatch):
    """installer.deploy.deploy with the playbook run replaced by a canned result; the
    registration after it is real, against the stand-in."""
    from installer import ansible, deploy

    outcome = {"status": "successful", "rc": 0}
    runs: list[dict] = []

    def run_playbook(site_path, inventory, playbook, *, limit=None, check=False, say=print):
        runs.append({"limit": limit, "check": check})
        return ansible.RunResult(playbook, site_path.parent, outcome["status"], outcome["rc"])

    monkeypatch.setattr(deploy, "learn_host_keys", lambda *a: None)
    monkeypatch.setattr(deploy, "inventory_for", lambda *a, **k: {})
    monkeypatch.setattr(ansible, "run_playbook", run_playbook)
    monkeypatch.setattr(deploy, "make_plan", lambda site: cloud.plan)

    def run(**kwargs):
        return deploy.deploy(cloud.loaded, say=cloud.said.append, **kwargs)

    return run, outcome, runs


def test_deploy_registers_after_a_successful_playbook(deploy_run, cloud):
    run, _, _ = deploy_run
    result = run()
    assert result.registration["created"] == 7 and result.registration["drift"] == 0
    assert {o["name"]: o["outcome"] for o in result.registration["objects"]}["test-vms"] == "created"
    assert all(h.STATE == one.MONITORED for h in cloud.client.hostpool.info().HOST)
    assert "OpenNebula: host n3 monitored" in cloud.said
    assert run().registration["existing"] == 7


def test_deploy_registers_nothing_in_check_mode_or_after_a_failure(deploy_run, cloud):
    run, outcome, runs = deploy_run
    assert run(check=True).registration is None
    outcome.update(status="failed", rc=2)
    assert run().registration is None
    assert [r["check"] for r in runs] == [True, False]
    assert [c.NAME for c in cloud.client.clusterpool.info().CLUSTER] == ["default"]


def test_deploy_limit_registers_only_its_kvm_hosts(deploy_run, cloud):
    run, _, _ = deploy_run
    result = run(limit=["n2"])
    assert [o["name"] for o in result.registration["objects"] if o["kind"] == "host"] == ["n2"]
    assert [h.NAME for h in cloud.client.hostpool.info().HOST] == ["n2"]


def test_deploy_json_has_the_registration_and_no_password(deploy_run, cloud):
    from click.testing import CliRunner

    from installer.cli.main import cli

    result = CliRunner().invoke(cli, ["deploy", "--json", str(cloud.loaded.path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    registration = json.loads(result.stdout)["registration"]
    assert (registration["created"], registration["existing"], registration["drift"]) == (7, 0, 0)
    assert {o["kind"] for o in registration["objects"]} == {"cluster", "host", "datastore", "network"}
    assert "OpenNebula: 7 created, 0 unchanged, 0 with drift" in result.stderr
    assert PASSWORD not in result.output


def test_wait_monitored_keeps_a_host_it_saw_monitored_when_a_later_round_fails():
    """n1 is monitored at once, then a probe of it times out (a busy frontend) while n2 still
    comes up: the wait ends well, n1's error is left to `onehci status`."""
    from types import SimpleNamespace as NS

    def host(name, state, error=""):
        return NS(NAME=name, STATE=state, TEMPLATE={"ERROR": error} if error else {})

    rounds = iter([[host("n1", one.MONITORED), host("n2", one.INIT)],
                   [host("n1", one.ERROR, "no answer within 30 s"), host("n2", one.INIT)],
                   [host("n1", one.ERROR, "no answer within 30 s, again"), host("n2", one.INIT)],
                   [host("n1", one.ERROR, "no answer within 30 s, again"), host("n2", one.MONITORED)]])
    client = NS(hostpool=NS(info=lambda: NS(HOST=next(rounds))))
    states = one.wait_monitored(client, ["n1", "n2"], timeout=20, say=lambda _: None, interval=0)
    assert states == {"n1": "ERROR", "n2": "MONITORED"}


def test_wait_monitored_rides_out_two_failed_rounds_of_a_host_that_then_comes_up():
    """lab1 right after a rebuild's deploy: two probes time out in a row, the third passes."""
    from types import SimpleNamespace as NS

    def host(name, state, error=""):
        return NS(NAME=name, STATE=state, TEMPLATE={"ERROR": error} if error else {})

    rounds = iter([[host("n1", one.INIT)],
                   [host("n1", one.ERROR, "15:12:10 no answer within 30 s")],
                   [host("n1", one.ERROR, "15:12:43 no answer within 30 s")],
                   [host("n1", one.MONITORED)]])
    client = NS(hostpool=NS(info=lambda: NS(HOST=next(rounds))))
    assert one.wait_monitored(client, ["n1"], timeout=20, say=lambda _: None, interval=0) == {"n1": "MONITORED"}
