"""installer/one.py without a daemon: the names and templates registration sends, the wait's
decision about each host, connection faults that never show the password, and what deploy does
around registration. Registration against OpenNebula itself (created, read back, drift, the
wait on real hosts) runs on the lab's cloud: tests/lab/test_registration.py."""

from __future__ import annotations

import json
import socket
import threading
import time
from types import SimpleNamespace
from xmlrpc.server import SimpleXMLRPCServer

import pyone
import pytest

from installer import one, state
from installer.errors import OnehciError
from installer.plan import make_plan


def test_object_names_derive_from_the_cluster():
    assert one.object_names("dijon") == {"cluster": "dijon", "system": "dijon-system",
                                         "images": "dijon-images", "network": "dijon-vms"}


def test_template_quotes_values_and_writes_vectors():
    text = one.template({"NAME": 'a "b"', "AR": {"TYPE": "IP4", "SIZE": "5"}})
    assert text == 'NAME = "a \\"b\\""\nAR = [ TYPE = "IP4", SIZE = "5" ]\n'
    assert one.template({"DISK": [{"IMAGE_ID": 3}, {"TYPE": "fs", "SIZE": 8}]}) == (
        'DISK = [ IMAGE_ID = "3" ]\nDISK = [ TYPE = "fs", SIZE = "8" ]\n')


def test_network_template_from_the_sites_vms_network(base_loaded):
    pairs = one.network_template("test-vms", base_loaded.site.networks.vms)
    assert pairs["VN_MAD"] == "bridge" and pairs["AR"]["TYPE"] == "IP4"
    assert pairs["BRIDGE"] == base_loaded.site.networks.vms.bridge


def test_hosts_are_registered_with_the_sites_vm_driver(base_loaded):
    plan = make_plan(base_loaded.site)
    assert plan.opennebula.vm_driver == "kvm"  # the default: real servers
    host = SimpleNamespace(IM_MAD="kvm", VM_MAD="kvm", CLUSTER_ID=100, CLUSTER="test")
    assert one.host_drift(host, driver="kvm", cluster_id=100, cluster="test") == []
    assert one.host_drift(host, driver="qemu", cluster_id=100, cluster="test") == [
        "IM_MAD is kvm, onehci sets qemu", "VM_MAD is kvm, onehci sets qemu"]


# --- the wait's decision about one host -------------------------------------------------


def host(state: int, error: str = ""):
    return SimpleNamespace(NAME="n1", STATE=state, TEMPLATE={"ERROR": error} if error else {})


@pytest.mark.parametrize("state,retries,verdict", [
    (one.MONITORED, 0, "done"),
    (one.DISABLED, 0, "done"),  # set so by hand: not waited for
    (one.OFFLINE, 0, "done"),
    (one.INIT, 0, "wait"),
    (one.ERROR, 0, "retry"),  # OpenNebula would retry it only minutes later: ask now
    (one.ERROR, one.RETRIES, "failed"),  # the round asked for failed too
])
def test_the_wait_asks_a_host_in_error_for_one_new_round_then_fails(state, retries, verdict):
    assert one.host_verdict(host(state), retries) == verdict


def test_an_unregistered_host_is_missing():
    assert one.host_verdict(None, 0) == "missing"


def test_the_error_of_a_host_is_shown_on_one_line():
    assert one.error_line(host(one.ERROR, "Fri Dec  4 16:20:10 2026 : Error monitoring\nHost n1 (0):  ")) == \
        "Fri Dec 4 16:20:10 2026 : Error monitoring Host n1 (0):"
    assert one.error_line(host(one.ERROR)) == "OpenNebula gave no reason"


# --- the connection ------------------------------------------------------------------


def test_no_password_file_is_a_clear_error_and_none_is_made(base_loaded):
    path = state.oneadmin_password_file(base_loaded.path)
    assert not path.exists()
    with pytest.raises(OnehciError, match=rf"^no oneadmin password in {path}: deploy the site first"):
        one.client_for(base_loaded, make_plan(base_loaded.site))
    assert not path.exists()


@pytest.fixture
def with_password(base_loaded):
    state.oneadmin_password(base_loaded.path)  # made once, 0600, as the first deploy does
    return base_loaded


def test_unreachable_api_is_a_clear_error(with_password, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.setattr(one, "api_url", lambda _plan: f"http://127.0.0.1:{port}/RPC2")
    with pytest.raises(OnehciError, match=rf"^OpenNebula's API at http://127.0.0.1:{port}/RPC2 is unreachable "
                                          r"\(connection refused\): is the opennebula service running"):
        one.client_for(with_password, make_plan(with_password.site))


def test_an_api_that_never_answers_times_out(with_password, monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts (the kernel does) and never answers
    port = listener.getsockname()[1]
    monkeypatch.setattr(one, "api_url", lambda _plan: f"http://127.0.0.1:{port}/RPC2")
    started = time.monotonic()
    try:
        with pytest.raises(OnehciError, match="did not answer in time"):  # the check's 0.3 s, not the calls' 60
            one.client_for(with_password, make_plan(with_password.site), timeout=0.3, calls_timeout=60)
    finally:
        listener.close()
    assert time.monotonic() - started < 10


def test_calls_after_the_check_may_take_the_calls_timeout(with_password, monkeypatch):
    """smoke's client: the check within 0.3 s, then a call that takes 0.8 s (an image allocation on a
    loaded frontend) still gets its answer; without calls_timeout the same call times out."""
    server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False)
    server.register_function(lambda *args: [True, "<USER><ID>0</ID><NAME>oneadmin</NAME></USER>", 0],
                             "one.user.info")
    server.register_function(lambda *args: time.sleep(0.8) or [True, 42, 0], "one.vm.action")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(one, "api_url", lambda _plan: f"http://127.0.0.1:{server.server_address[1]}/RPC2")
    try:
        patient = one.client_for(with_password, make_plan(with_password.site), timeout=0.3, calls_timeout=5)
        assert patient.vm.action("terminate-hard", 1) == 42
        hasty = one.client_for(with_password, make_plan(with_password.site), timeout=0.3)
        with pytest.raises(OnehciError, match="did not answer in time"), one.api_errors():
            hasty.vm.action("terminate-hard", 1)
    finally:
        server.shutdown()
        server.server_close()


def test_errors_never_carry_the_session():
    one._secrets.add("pa$$-w0rd")
    with pytest.raises(OnehciError) as caught:
        with one.api_errors("http://10.0.0.1:2633/RPC2"):
            raise pyone.OneException("<Fault -501: 'wrong parameters calling one.x: oneadmin:pa$$-w0rd, 7'>")
    assert str(caught.value) == ("OpenNebula's API at http://10.0.0.1:2633/RPC2: <Fault -501: 'wrong parameters "
                                 "calling one.x: oneadmin:***, 7'>")
    assert one.scrub("a pa$$-w0rd b, oneadmin:other c") == "a *** b, oneadmin:*** c"


# --- deploy around registration ------------------------------------------------------------


@pytest.fixture
def deploy_run(base_loaded, monkeypatch):
    """installer.deploy.deploy with the playbook run replaced by a canned outcome and the
    registration recorded (tests/lab runs both for real)."""
    from installer import ansible, deploy

    outcome = {"status": "successful", "rc": 0}
    calls: dict[str, list] = {"runs": [], "registrations": [], "waits": []}
    inventory = {"all": {"vars": {}}}

    def run_playbook(site_path, inventory, playbook, *, limit=None, check=False, say=print):
        calls["runs"].append({"limit": limit, "check": check})
        return ansible.RunResult(playbook, site_path.parent, outcome["status"], outcome["rc"])

    def register_cloud(loaded, plan, *, hosts=None, timeout=180.0, say=print):
        calls["registrations"].append(hosts)
        calls["waits"].append(timeout)
        return one.Report([one.Registered("host", h, i, created=True) for i, h in enumerate(hosts or ["n1"])])

    monkeypatch.setattr(deploy, "learn_host_keys", lambda *a: None)
    monkeypatch.setattr(deploy, "inventory_for", lambda *a, **k: inventory)
    monkeypatch.setattr(ansible, "run_playbook", run_playbook)
    monkeypatch.setattr(one, "register_cloud", register_cloud)
    monkeypatch.setattr(deploy, "record_deployed", lambda *a: None)

    def run(**kwargs):
        return deploy.deploy(base_loaded, say=lambda _m: None, **kwargs)

    run.inventory = inventory
    return run, outcome, calls


def test_deploy_registers_after_a_successful_playbook_only(deploy_run):
    run, outcome, calls = deploy_run
    assert run().registration["created"] == 1
    assert run(check=True).registration is None
    outcome.update(status="failed", rc=2)
    assert run().registration is None
    assert [r["check"] for r in calls["runs"]] == [False, True, False]
    assert calls["registrations"] == [None]  # once: the successful run without --check


def test_deploy_waits_for_monitoring_as_long_as_the_probes_may_run(deploy_run):
    run, _, calls = deploy_run
    run()
    # OpenNebula's own 90 s probe limit: the 3 minutes a real server's first round needs at most
    run.inventory["all"]["vars"][one.PROBE_TIMEOUT_VAR] = 600  # an emulated rehearsal's environment
    run()
    assert calls["waits"] == [180.0, 690.0]


def test_deploy_limit_registers_only_its_kvm_hosts(deploy_run, base_loaded):
    run, _, calls = deploy_run
    kvm = make_plan(base_loaded.site).opennebula.hosts
    other = next(n.hostname for n in base_loaded.site.nodes if n.hostname != kvm[0])
    run(limit=[kvm[0], other] if other not in kvm else [kvm[0]])
    assert calls["registrations"] == [[kvm[0]]]


def test_deploy_json_carries_the_registration(deploy_run, base_loaded, monkeypatch):
    from click.testing import CliRunner

    from installer.cli.main import cli

    result = CliRunner().invoke(cli, ["deploy", "--json", str(base_loaded.path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    registration = json.loads(result.stdout)["registration"]
    assert (registration["created"], registration["existing"], registration["drift"]) == (1, 0, 0)
    assert registration["objects"][0]["kind"] == "host"


class FakeHosts:
    """A host pool whose hosts go through the states given, one per call to hostpool.info()."""

    def __init__(self, states: dict[str, list[int]]):
        self.states, self.calls, self.status_calls = states, 0, []
        self.hostpool, self.host = self, self

    def info(self):
        rounds = {name: seq[min(self.calls, len(seq) - 1)] for name, seq in self.states.items()}
        self.calls += 1
        return SimpleNamespace(HOST=[SimpleNamespace(ID=i, NAME=n, STATE=st, TEMPLATE={"ERROR": "probe failed\nbadly"})
                                     for i, (n, st) in enumerate(rounds.items())])

    def status(self, host_id, status):
        self.status_calls.append((host_id, status))


def test_wait_monitored_asks_a_host_in_error_for_a_new_round_once_then_fails_with_its_error():
    said: list[str] = []
    up = FakeHosts({"n1": [one.INIT, one.MONITORED], "n2": [one.ERROR, one.INIT, one.MONITORED]})
    assert one.wait_monitored(up, ["n1", "n2"], timeout=5, say=said.append, interval=0) == {
        "n1": "MONITORED", "n2": "MONITORED"}
    assert up.status_calls == [(1, one.OFFLINE_STATUS), (1, one.ENABLE_STATUS)]  # `onehost forceupdate` of n2
    assert "OpenNebula: host n2 is in ERROR (probe failed badly): asking for a new monitoring round" in said
    down = FakeHosts({"n1": [one.ERROR]})
    with pytest.raises(OnehciError, match=r"^host n1 is in ERROR: probe failed badly \(OpenNebula's monitoring log"):
        one.wait_monitored(down, ["n1"], timeout=5, say=said.append, interval=0)
    assert one.wait_monitored(down, [], timeout=5, say=said.append) == {}


def test_wait_monitored_names_the_hosts_still_not_monitored_at_the_timeout():
    with pytest.raises(OnehciError, match=r"^host n2 is not monitored after 0 s \(state INIT\)$"):
        one.wait_monitored(FakeHosts({"n1": [one.MONITORED], "n2": [one.INIT]}), ["n1", "n2"], timeout=0,
                           say=lambda _m: None, interval=0)
