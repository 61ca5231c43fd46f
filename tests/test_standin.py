"""The lab's OpenNebula stand-in (installer/lab/standin): the daemon, run as shipped with
Debian's python3 and driven through pyone's own client and bindings; and its packages,
built into a flat apt repository that apt reads."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import urllib.request
import xmlrpc.client
from pathlib import Path

import pyone
import pytest

from installer.lab.standin import onemonitor, onetemplate, packages

from tests.standin_daemon import PASSWORD, PYTHON, Daemon, free_port, wait_for


def probes_of(daemon: Daemon, host: str) -> int:
    log = daemon.root / "fake/probes.log"
    return log.read_text().split().count(host) if log.exists() else 0


# --- the daemon: API --------------------------------------------------------------


def test_help_and_version_say_stand_in(tmp_path):
    lib = Path(packages.daemon_files()[0]).parent
    done = subprocess.run([PYTHON, "-s", "-E", str(lib / "oned.py"), "--help"],
                          capture_output=True, text=True, check=True)
    for option in ("--listen", "--port", "--state-file", "--auth-file", "--monitor-interval"):
        assert option in done.stdout
    assert "stand-in" in done.stdout
    done = subprocess.run([PYTHON, "-s", "-E", str(lib / "oned.py"), "--version"],
                          capture_output=True, text=True, check=True)
    assert "onehci stand-in" in done.stdout


def test_version_and_log_lines_say_stand_in(standin):
    daemon = standin()
    assert "stand-in" in daemon.one().system.version()
    lines = daemon.log.read_text().splitlines()
    assert lines and all(line.startswith("onehci stand-in oned") for line in lines)


def test_wrong_password_is_an_authentication_error(standin):
    daemon = standin()
    with pytest.raises(pyone.OneAuthenticationException,
                       match=r"^\[one.hostpool.info\] User couldn't be authenticated, aborting call.$"):
        daemon.one("oneadmin:wrong").hostpool.info()
    answer = daemon.raw("one.user.info", -1, session="serveradmin:" + PASSWORD)
    assert answer[:3] == [False, "[one.user.info] User couldn't be authenticated, aborting call.", 0x0100]
    assert daemon.one().user.info(-1).NAME == "oneadmin"
    assert PASSWORD not in daemon.log.read_text()


def test_fresh_state_is_a_fresh_opennebula(standin):
    one = standin().one()
    clusters = one.clusterpool.info().CLUSTER
    assert [(c.ID, c.NAME) for c in clusters] == [(0, "default")]
    assert clusters[0].DATASTORES.ID == [0, 1, 2]
    dss = {ds.ID: ds for ds in one.datastorepool.info().DATASTORE}
    assert {i: (ds.NAME, ds.TYPE) for i, ds in dss.items()} == {
        0: ("system", 1), 1: ("default", 0), 2: ("files", 2)}
    assert one.hostpool.info().HOST == []
    assert one.vnpool.info(-2, -1, -1).VNET == []
    assert one.vmpool.info(-2, -1, -1, -1).VM == []
    assert one.vmpool.infoextended(-2, -1, -1, -1).VM == []


def register(one, location: str) -> dict:
    """What onehci's registration does: a cluster, a kvm host, two shared datastores on
    the MooseFS mount, a bridged network."""
    ids = {"cluster": one.cluster.allocate("dijon")}
    ids["host"] = one.host.allocate("nebula81", "kvm", "kvm", ids["cluster"])
    ids["system"] = one.datastore.allocate(
        f'NAME = "dijon-system"\nTYPE = "SYSTEM_DS"\nTM_MAD = "shared"\nBASE_PATH = "{location}"\n',
        ids["cluster"])
    ids["image"] = one.datastore.allocate(
        {"NAME": "dijon-images", "DS_MAD": "fs", "TM_MAD": "shared"}, ids["cluster"])
    ids["vnet"] = one.vn.allocate(
        'NAME = "dijon-vms"\nVN_MAD = "bridge"\nBRIDGE = "br0"\n'
        'AR = [ TYPE = "IP4", IP = "192.168.20.10", SIZE = "200" ]\n'
        'DNS = "192.168.10.1"\nGATEWAY = "192.168.20.1"\n', ids["cluster"])
    one.cluster.adddatastore(ids["cluster"], ids["system"])
    one.cluster.addvnet(ids["cluster"], ids["vnet"])
    return ids


def test_registration_reads_back_through_pyone_bindings(standin):
    daemon = standin()
    one = daemon.one()
    ids = register(one, daemon.location)
    assert (ids["cluster"], ids["host"], ids["system"], ids["image"], ids["vnet"]) == (100, 0, 100, 101, 0)

    cluster = one.cluster.info(ids["cluster"])
    assert cluster.NAME == "dijon"
    assert cluster.HOSTS.ID == [0] and cluster.DATASTORES.ID == [100, 101] and cluster.VNETS.ID == [0]
    assert one.cluster.info(0).HOSTS.ID == []

    host = one.host.info(ids["host"])
    assert (host.NAME, host.IM_MAD, host.VM_MAD) == ("nebula81", "kvm", "kvm")
    assert (host.CLUSTER_ID, host.CLUSTER) == (100, "dijon")
    assert host.STATE in (0, 3)  # INIT until monitored; the fake ssh does not know it
    assert host.HOST_SHARE.RUNNING_VMS == 0
    assert host.TEMPLATE["IM_MAD"] == "kvm"

    system = one.datastore.info(ids["system"])
    assert (system.TYPE, system.TM_MAD, system.DS_MAD) == (1, "shared", "-")
    # OpenNebula puts every datastore at DATASTORE_LOCATION/ID and drops a BASE_PATH given
    assert system.BASE_PATH == f"{daemon.location}/{ids['system']}"
    assert "BASE_PATH" not in system.TEMPLATE
    assert system.TEMPLATE["SHARED"] == "YES" and system.TEMPLATE["TYPE"] == "SYSTEM_DS"
    assert system.CLUSTERS.ID == [100]
    image = one.datastore.info(ids["image"])
    assert (image.TYPE, image.TM_MAD, image.DS_MAD, image.DISK_TYPE) == (0, "shared", "fs", 0)
    assert image.TEMPLATE["LN_TARGET"] == "NONE" and image.TEMPLATE["CLONE_TARGET"] == "SYSTEM"
    assert image.TEMPLATE["DS_MAD"] == "fs" and "NAME" not in image.TEMPLATE
    assert isinstance(image.FREE_MB, int)

    vnet = one.vn.info(ids["vnet"])
    assert (vnet.NAME, vnet.VN_MAD, vnet.BRIDGE, vnet.BRIDGE_TYPE) == ("dijon-vms", "bridge", "br0", "linux")
    assert vnet.CLUSTERS.ID == [100] and vnet.STATE == 1
    assert vnet.TEMPLATE["GATEWAY"] == "192.168.20.1" and vnet.TEMPLATE["SECURITY_GROUPS"] == "0"
    assert "AR" not in vnet.TEMPLATE
    (ar,) = vnet.AR_POOL.AR
    assert (ar.AR_ID, ar.TYPE, ar.IP, ar.SIZE, ar.MAC) == ("0", "IP4", "192.168.20.10", 200, "02:00:c0:a8:14:0a")
    assert (ar.IP_END, ar.MAC_END, ar.USED_LEASES) == ("192.168.20.209", "02:00:c0:a8:14:d1", "0")
    (listed,) = one.vnpool.info(-2, -1, -1).VNET
    assert listed.AR_POOL.AR[0].ALLOCATED == "" and listed.AR_POOL.AR[0].SIZE == 200

    # a host moves between clusters; a datastore joins one more
    one.cluster.addhost(0, ids["host"])
    assert one.host.info(ids["host"]).CLUSTER_ID == 0
    assert one.cluster.info(ids["cluster"]).HOSTS.ID == []
    one.cluster.adddatastore(0, ids["image"])
    assert one.datastore.info(ids["image"]).CLUSTERS.ID == [0, 100]


def test_datastore_update_merge_and_replace(standin):
    daemon = standin()
    one = daemon.one()
    ds = register(one, daemon.location)["image"]
    one.datastore.update(ds, 'LIMIT_MB = "1024"', 1)
    one.datastore.update(ds, {"TEMPLATE": {"RESTRICTED_DIRS": "/srv"}}, 1)  # pyone sends XML
    tmpl = one.datastore.info(ds).TEMPLATE
    assert tmpl["LIMIT_MB"] == "1024" and tmpl["RESTRICTED_DIRS"] == "/srv" and tmpl["TM_MAD"] == "shared"
    one.datastore.update(ds, 'TM_MAD = "ssh"', 0)  # replace: the drivers stay, the rest goes
    after = one.datastore.info(ds)
    assert after.TM_MAD == "ssh" and after.TEMPLATE["DS_MAD"] == "fs"
    assert "LIMIT_MB" not in after.TEMPLATE and after.TEMPLATE["TYPE"] == "IMAGE_DS"
    with pytest.raises(pyone.OneApiException, match="Wrong update type"):
        one.datastore.update(ds, 'A = "b"', 7)
    with pytest.raises(pyone.OneInternalException, match="not defined in oned.conf"):
        one.datastore.update(ds, 'TM_MAD = "nosuch"', 1)
    assert one.datastore.info(ds).TM_MAD == "ssh"  # a refused update changes nothing
    one.vn.update(0, 'GATEWAY = "192.168.20.254"', 1)
    assert one.vn.info(0).TEMPLATE["GATEWAY"] == "192.168.20.254"


def test_host_status_enable_disable_offline(standin):
    one = standin().one()
    host = one.host.allocate("h1", "kvm", "kvm", -1)
    assert one.host.info(host).CLUSTER_ID == 0  # -1: the default cluster
    for status, state in ((1, 4), (0, 0), (2, 8), (0, 0)):
        assert one.host.status(host, status) == host
        assert one.host.info(host).STATE in ((state, 3) if state == 0 else (state,))
    with pytest.raises(pyone.OneApiException):
        one.host.status(host, 9)
    assert one.host.delete(host) == host
    assert one.hostpool.info().HOST == []


def test_missing_objects_are_no_exists(standin):
    daemon = standin()
    with pytest.raises(pyone.OneNoExistsException, match=r"^\[one.host.info\] Error getting host \[999\].$"):
        daemon.one().host.info(999)
    cases = [("one.datastore.info", (999,), "datastore [999]"), ("one.vn.info", (999,), "virtual network [999]"),
             ("one.cluster.info", (999,), "cluster [999]"), ("one.user.info", (5,), "user [5]"),
             ("one.host.status", (999, 1), "host [999]"), ("one.cluster.addhost", (999, 0), "cluster [999]"),
             ("one.cluster.addhost", (0, 999), "host [999]"), ("one.host.allocate", ("h", "kvm", "kvm", 7), "cluster [7]")]
    for method, params, what in cases:
        answer = daemon.raw(method, *params)
        assert answer[0] is False and answer[2] == 0x0400, (method, answer)
        assert answer[1] == f"[{method}] Error getting {what}.", answer


def test_refusals_use_opennebula_codes_and_messages(standin):
    daemon = standin()
    one = daemon.one()
    one.host.allocate("h1", "kvm", "kvm", -1)
    refusals = [
        (("one.host.allocate", "h1", "kvm", "kvm", -1), 0x4000,
         "[one.host.allocate] Error allocating a new host. NAME is already taken by HOST 0."),
        (("one.datastore.allocate", 'NAME = "x"\nDS_MAD = "fs"', -1), 0x4000,
         "[one.datastore.allocate] Error allocating a new datastore. No TM_MAD in template."),
        (("one.datastore.allocate", 'NAME = "x"\nTYPE = "SYSTEM_DS"\nDS_MAD = fs\nTM_MAD = shared', -1), 0x4000,
         "[one.datastore.allocate] Error allocating a new datastore. SYSTEM datastores cannot have DS_MAD defined."),
        (("one.vn.allocate", 'NAME = "n"', -1), 0x4000,
         "[one.vn.allocate] Error allocating a new virtual network. No VN_MAD in template for Virtual Network."),
        (("one.vn.allocate", 'NAME = "n"\nVN_MAD = bridge\nAR = [ TYPE = IP4, SIZE = 5 ]', -1), 0x4000,
         "[one.vn.allocate] Error allocating a new virtual network. Wrong or empty IP attribute"),
        (("one.cluster.delete", 0), 0x0800,
         "[one.cluster.delete] Cannot delete cluster. System Clusters (ID < 100) cannot be deleted."),
    ]
    for (method, *params), code, message in refusals:
        assert daemon.raw(method, *params)[:3] == [False, message, code]
    answer = daemon.raw("one.datastore.allocate", 'NAME = "x" DS_MAD = [ A = ', -1)
    assert answer[2] == 0x2000 and answer[1].startswith("[one.datastore.allocate] Parse error")
    with pytest.raises(xmlrpc.client.Fault):  # xmlrpc-c checks signatures before oned runs
        daemon.raw("one.host.info", "zero")
    with pytest.raises(xmlrpc.client.Fault, match="not defined"):
        daemon.raw("one.image.info", 0)
    cluster = one.cluster.allocate("empty")
    assert one.cluster.delete(cluster) == cluster
    # refused allocations take no id
    assert one.vn.allocate('NAME = "ok"\nVN_MAD = bridge', -1) == 0
    assert one.datastore.allocate('NAME = "ok"\nDS_MAD = fs\nTM_MAD = shared', -1) == 100
    assert one.vn.info(0).BRIDGE == "onebr0"


def test_every_document_parses_with_pyone_bindings(standin):
    daemon = standin()
    one = daemon.one()
    ids = register(one, daemon.location)
    documents = {
        "CLUSTER_POOL": one.clusterpool.info(), "CLUSTER": one.cluster.info(ids["cluster"]),
        "HOST_POOL": one.hostpool.info(), "HOST": one.host.info(ids["host"]),
        "DATASTORE_POOL": one.datastorepool.info(), "DATASTORE": one.datastore.info(ids["system"]),
        "VNET_POOL": one.vnpool.info(-2, -1, -1), "VNET": one.vn.info(ids["vnet"]),
        "USER": one.user.info(-1), "VM_POOL": one.vmpool.info(-2, -1, -1, -1)}
    for root, document in documents.items():
        assert type(document).__name__ == root + "Sub", root


def test_state_survives_a_restart(standin, tmp_path):
    daemon = standin()
    ids = register(daemon.one(), daemon.location)
    daemon.one().datastore.update(ids["image"], 'LIMIT_MB = "10"', 1)
    daemon.stop()
    # OpenNebula takes one_auth only on its first start: a later change is not a new password
    (tmp_path / "one_auth").write_text("oneadmin:another\n")
    daemon.start()
    one = daemon.one()
    assert one.datastore.info(ids["image"]).TEMPLATE["LIMIT_MB"] == "10"
    assert one.host.info(ids["host"]).CLUSTER == "dijon"
    assert one.vn.info(ids["vnet"]).AR_POOL.AR[0].IP == "192.168.20.10"
    assert one.cluster.allocate("second") == 101 and one.datastore.allocate(
        'NAME = "more"\nDS_MAD = fs\nTM_MAD = shared', -1) == 102
    with pytest.raises(pyone.OneAuthenticationException):
        daemon.one("oneadmin:another").user.info(-1)
    one.user.passwd(0, "another")
    assert daemon.one("oneadmin:another").user.info(-1).ID == 0
    assert "another" not in daemon.log.read_text()


def test_a_one_auth_written_after_the_first_start_is_taken(standin, tmp_path):
    (tmp_path / "one_auth").unlink()
    daemon = standin()
    with pytest.raises(pyone.OneAuthenticationException):
        daemon.one().user.info(-1)
    (tmp_path / "one_auth").write_text(f"oneadmin:{PASSWORD}\n")
    assert daemon.one().user.info(-1).NAME == "oneadmin"


def test_a_broken_state_file_stops_the_start_with_a_reason(tmp_path):
    state = tmp_path / "state.json"
    state.write_text("{not json")
    lib = Path(packages.daemon_files()[0]).parent
    done = subprocess.run([PYTHON, "-s", "-E", str(lib / "oned.py"), "--listen", "127.0.0.1",
                           "--port", str(free_port()), "--state-file", str(state),
                           "--auth-file", str(tmp_path / "none"), "--config", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert f"onehci stand-in oned [E] cannot use the state file {state}" in done.stderr
    assert state.read_text() == "{not json"


# --- the daemon: monitoring -------------------------------------------------------


def host_state(one, oid: int, state: int):
    host = one.host.info(oid)
    return host if host.STATE == state else None


def test_monitoring_marks_hosts_monitored_or_in_error_with_the_reason(standin):
    # "/" is a mount point everywhere: the virsh and ssh checks decide
    daemon = standin("--monitor-interval", "0.2", location="/")
    one = daemon.one()
    good, novirsh, down = (one.host.allocate(name, "kvm", "kvm", -1) for name in ("good", "novirsh", "down"))
    monitored = wait_for(lambda: host_state(one, good, 2), "host good MONITORED")
    assert "ERROR" not in monitored.TEMPLATE
    assert monitored.HOST_SHARE.TOTAL_CPU == 100 * os.cpu_count()
    assert monitored.HOST_SHARE.TOTAL_MEM > 0 and monitored.MONITORING.TIMESTAMP > 0
    assert monitored.TEMPLATE["HOSTNAME"] == socket.gethostname()
    error = wait_for(lambda: host_state(one, novirsh, 3), "host novirsh in ERROR").TEMPLATE["ERROR"]
    assert "Error monitoring Host novirsh (1): virsh -c qemu:///system list failed: " \
           "error: failed to connect to the hypervisor" in error
    error = wait_for(lambda: host_state(one, down, 3), "host down in ERROR").TEMPLATE["ERROR"]
    assert "cannot SSH to down" in error and "Connection refused" in error

    # disabled hosts are still monitored but stay disabled; offline ones are not probed
    one.host.status(good, 1)
    one.host.status(down, 2)
    probes_down = probes_of(daemon, "down")
    seen = probes_of(daemon, "good")
    wait_for(lambda: probes_of(daemon, "good") >= seen + 2, "two more rounds")
    assert one.host.info(good).STATE == 4 and one.host.info(down).STATE == 8
    assert probes_of(daemon, "down") <= probes_down + 1  # at most the round under way
    one.host.status(good, 0)
    assert one.host.info(good).STATE == 2  # enabled again: it had been monitored
    assert "host novirsh (1) in error" in daemon.log.read_text()


def test_monitoring_requires_the_datastores_mount(standin, tmp_path):
    location = tmp_path / "datastores"
    (location / "100").mkdir(parents=True)  # exists on the frontend, but is no mount point
    daemon = standin("--monitor-interval", "0.2", location=str(location))
    one = daemon.one()
    host = one.host.allocate("good", "kvm", "kvm", -1)
    error = wait_for(lambda: host_state(one, host, 3), "host in ERROR").TEMPLATE["ERROR"]
    assert f"{location} is not a mount point" in error
    ds = one.datastore.allocate('NAME = "sys"\nTYPE = SYSTEM_DS\nTM_MAD = shared', -1)
    assert ds == 100
    sized = wait_for(lambda: one.datastore.info(ds).TOTAL_MB, "datastore 100 sized")
    st = os.statvfs(location / "100")
    assert sized == st.f_blocks * st.f_frsize // 2**20
    assert one.datastore.info(ds).FREE_MB <= sized
    # a datastore registered before anything used it gets its directory, then its size
    wait_for(lambda: one.datastore.info(0).TOTAL_MB, "datastore 0 sized")
    assert (location / "0").is_dir()


def test_probe_runs_as_oneadmin_under_runuser_when_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    argv = onemonitor.probe_argv(["ssh", "-o", "BatchMode=yes"], "n1", "true", "oneadmin")
    assert argv == ["runuser", "-u", "oneadmin", "--", "ssh", "-o", "BatchMode=yes", "n1", "true"]
    assert onemonitor.probe_argv(["ssh"], "n1", "true", "root") == ["ssh", "n1", "true"]
    assert onemonitor.probe_argv(["ssh"], "n1", "true", "") == ["ssh", "n1", "true"]
    script = onemonitor.probe_script("/var/lib/one/datastores")
    assert "virsh -c qemu:///system list" in script and "mountpoint -q /var/lib/one/datastores" in script


# --- templates ---------------------------------------------------------------------


def test_template_syntax_and_xml():
    text = '''# a comment
NAME = "dijon images"   DS_MAD = fs
TM_MAD="shared"
AR = [ TYPE = "IP4",
       ip = "10.0.0.1", SIZE = 10 ]
QUOTED = "say \\"hi\\"
on two lines"
'''
    tmpl = onetemplate.parse(text)
    assert tmpl == [("NAME", "dijon images"), ("DS_MAD", "fs"), ("TM_MAD", "shared"),
                    ("AR", [("TYPE", "IP4"), ("IP", "10.0.0.1"), ("SIZE", "10")]),
                    ("QUOTED", 'say "hi"\non two lines')]
    assert onetemplate.parse(onetemplate.to_xml(tmpl)) == sorted(
        (name, sorted(value) if isinstance(value, list) else value) for name, value in tmpl)
    assert onetemplate.to_xml([("B", "x]]>y"), ("A", "1")]) == \
        "<TEMPLATE><A><![CDATA[1]]></A><B><![CDATA[x]]]]><![CDATA[>y]]></B></TEMPLATE>"
    for bad in ('NAME = ', 'NAME "x"', 'V = [ A = [ B = 1 ] ]', 'V = [ A = 1 B = 2 ]', 'Q = "open'):
        with pytest.raises(onetemplate.TemplateError, match="Parse error"):
            onetemplate.parse(bad)


# --- packages and repository --------------------------------------------------------

EXPECTED = ("opennebula", "opennebula-common", "opennebula-tools", "opennebula-fireedge",
            "opennebula-gate", "opennebula-flow", "opennebula-node-kvm")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return packages.build_repo(tmp_path_factory.mktemp("repo") / "standin")


def deb(repo: Path, name: str) -> Path:
    return repo / f"{name}_{packages.VERSION}_all.deb"


def test_packages_have_opennebula_names_and_say_stand_in(repo):
    assert sorted(p.name.split("_")[0] for p in repo.glob("*.deb")) == sorted(EXPECTED)
    for name in EXPECTED:
        info = subprocess.run(["dpkg-deb", "-I", str(deb(repo, name))], capture_output=True,
                              text=True, check=True).stdout
        assert f" Package: {name}\n" in info
        assert " Version: 7.0.0-1~onehci.standin\n" in info
        assert " Description: onehci stand-in: " in info and "NOT OpenNebula" in info
    contents = subprocess.run(["dpkg-deb", "-c", str(deb(repo, "opennebula"))], capture_output=True,
                              text=True, check=True).stdout
    for path in ("./usr/lib/one/onehci-standin/oned.py", "./lib/systemd/system/opennebula.service",
                 "./etc/one/oned.conf", "./usr/bin/oned"):
        assert path in contents
    for name in ("opennebula-fireedge", "opennebula-gate", "opennebula-flow"):
        contents = subprocess.run(["dpkg-deb", "-c", str(deb(repo, name))], capture_output=True,
                                  text=True, check=True).stdout
        assert f"./lib/systemd/system/{name}.service" in contents
    node = subprocess.run(["dpkg-deb", "-f", str(deb(repo, "opennebula-node-kvm")), "Depends"],
                          capture_output=True, text=True, check=True).stdout
    assert "libvirt-daemon-system" in node and "qemu-system-x86" in node


def test_maintainer_scripts_and_units(repo, tmp_path):
    for name in EXPECTED:
        control = tmp_path / name
        subprocess.run(["dpkg-deb", "-e", str(deb(repo, name)), str(control)], check=True)
        for script in ("postinst", "prerm"):
            if (control / script).exists():
                subprocess.run(["sh", "-n", str(control / script)], check=True)
    postinst = (tmp_path / "opennebula/postinst").read_text()
    assert "--gid 9869 oneadmin" in postinst and "--uid 9869" in postinst
    assert "--home-dir /var/lib/one" in postinst
    assert "if [ ! -e /var/lib/one/.one/one_auth ]" in postinst and "chmod 0600" in postinst
    assert "usermod -a -G $group oneadmin" in (tmp_path / "opennebula-node-kvm/postinst").read_text()
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb(repo, "opennebula")), str(root)], check=True)
    unit = (root / "lib/systemd/system/opennebula.service").read_text()
    assert "User=oneadmin" in unit and "oned.py --config /etc/one/oned.conf" in unit
    # the shipped daemon runs with nothing but its own files and the standard library
    done = subprocess.run([PYTHON, "-s", "-E", str(root / "usr/lib/one/onehci-standin/oned.py"), "--version"],
                          capture_output=True, text=True, check=True, cwd="/")
    assert "onehci stand-in" in done.stdout


def test_postinst_makes_oneadmin_and_keeps_an_existing_one_auth(repo, tmp_path):
    """The maintainer scripts, run for real in a mount namespace where /etc, /var/lib,
    /var/log and /run are throwaway copies: nothing of this machine changes."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in ("opennebula-common", "opennebula", "opennebula-node-kvm"):
        subprocess.run(["dpkg-deb", "-e", str(deb(repo, name)), str(scripts / name)], check=True)
    shutil.copytree("/etc", tmp_path / "etc", symlinks=True)
    for sub in ("varlib", "varlog", "run"):
        (tmp_path / sub).mkdir()
    # libvirt's group as libvirt-daemon-system makes it; no kvm group: both cases happen
    group = (tmp_path / "etc/group").read_text().splitlines()
    group = [line for line in group if not line.startswith(("kvm:", "libvirt:"))] + ["libvirt:x:9870:"]
    (tmp_path / "etc/group").write_text("\n".join(group) + "\n")
    run = f"""set -e
mount --bind {tmp_path}/etc /etc
mount --bind {tmp_path}/varlib /var/lib
mount --bind {tmp_path}/varlog /var/log
mount --bind {tmp_path}/run /run
sh {scripts}/opennebula-common/postinst configure
sh {scripts}/opennebula/postinst configure
cp /var/lib/one/.one/one_auth {tmp_path}/generated
printf 'oneadmin:chosen-by-the-role\\n' > /var/lib/one/.one/one_auth
sh {scripts}/opennebula/postinst configure {packages.VERSION}
sh {scripts}/opennebula-node-kvm/postinst configure
"""
    subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", run], check=True)
    passwd = (tmp_path / "etc/passwd").read_text().splitlines()
    assert [line for line in passwd if line.startswith("oneadmin:")] == [
        "oneadmin:x:9869:9869:OpenNebula (onehci stand-in):/var/lib/one:/bin/bash"]
    group = (tmp_path / "etc/group").read_text().splitlines()
    assert "oneadmin:x:9869:" in group and "libvirt:x:9870:oneadmin" in group
    home = tmp_path / "varlib/one"
    assert (home.stat().st_uid, home.stat().st_gid) == (9869, 9869)
    assert oct((home / ".one").stat().st_mode & 0o777) == "0o700"
    auth = home / ".one/one_auth"
    assert oct(auth.stat().st_mode & 0o777) == "0o600" and auth.stat().st_uid == 9869
    assert re.fullmatch(r"oneadmin:[0-9a-f]{32}\n", (tmp_path / "generated").read_text())
    assert auth.read_text() == "oneadmin:chosen-by-the-role\n"  # only written when missing


def test_fireedge_stand_in_serves_its_page(repo, tmp_path):
    root = tmp_path / "root"
    for name in ("opennebula-common", "opennebula-fireedge"):
        subprocess.run(["dpkg-deb", "-x", str(deb(repo, name)), str(root)], check=True)
    port = free_port()
    proc = subprocess.Popen([PYTHON, "-s", "-E", str(root / "usr/lib/one/onehci-standin/httpstub.py"),
                             "--service", "FireEdge", "--config", str(root / "etc/one/fireedge-server.conf"),
                             "--listen", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def page():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/fireedge/sunstone", timeout=2) as answer:
                return answer.read().decode()
        except OSError:
            assert proc.poll() is None, "the FireEdge stand-in exited"
            return None

    try:
        assert "FireEdge: onehci stand-in" in wait_for(page, "the FireEdge stand-in")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_build_repo_rebuilds_only_when_inputs_change(repo, tmp_path, monkeypatch):
    repo = Path(shutil.copytree(repo, tmp_path / "repo"))  # copy2 keeps the times
    debs = {p.name: p.stat().st_mtime_ns for p in repo.glob("*.deb")}
    release = (repo / "Release").read_text()
    assert packages.build_repo(repo) == repo
    assert {p.name: p.stat().st_mtime_ns for p in repo.glob("*.deb")} == debs
    assert (repo / "Release").read_text() == release
    changed = packages.packages()
    changed[0].body += "\nchanged"
    monkeypatch.setattr(packages, "packages", lambda: changed)
    packages.build_repo(repo)
    assert {p.name: p.stat().st_mtime_ns for p in repo.glob("*.deb")} != debs
    assert "changed" in subprocess.run(["dpkg-deb", "-f", str(deb(repo, changed[0].name)), "Description"],
                                       capture_output=True, text=True, check=True).stdout


def test_apt_reads_the_repository(repo, tmp_path):
    apt = tmp_path / "apt"
    for sub in ("state/lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        (apt / sub).mkdir(parents=True)
    (apt / "sources.list").write_text(packages.apt_source(f"file:{repo}") + "\n")
    options = [f"-oDir::Etc::sourcelist={apt}/sources.list", f"-oDir::Etc::sourceparts={apt}/sources.list.d",
               f"-oDir::Etc::preferencesparts={apt}/preferences.d", f"-oDir::State={apt}/state",
               f"-oDir::Cache={apt}/cache", "-oDebug::NoLocking=1", "-oAPT::Sandbox::User=root"]
    update = subprocess.run(["apt-get", *options, "update"], capture_output=True, text=True)
    assert update.returncode == 0 and "W:" not in update.stderr and "E:" not in update.stderr, update.stderr
    policy = subprocess.run(["apt-cache", *options, "policy", *EXPECTED], capture_output=True,
                            text=True, check=True).stdout
    assert policy.count("Candidate: 7.0.0-1~onehci.standin") == len(EXPECTED)
    # the frontend's install line from OpenNebula 7.0's guide resolves against this machine
    install = subprocess.run(["apt-get", *options, "install", "--simulate", "opennebula",
                              "opennebula-fireedge", "opennebula-gate", "opennebula-flow"],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    assert "Inst opennebula-tools" in install.stdout and "Inst opennebula-common" in install.stdout


def test_a_probe_that_hangs_says_where(tmp_path):
    """A fake `ssh` that runs the probe locally with a `mountpoint` that never returns."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "virsh").write_text("#!/bin/sh\nexit 0\n")
    (fake / "mountpoint").write_text("#!/bin/sh\nexec sleep 6\n")
    (fake / "ssh").write_text(f'#!/bin/sh\nshift\nPATH={fake}:$PATH exec sh -c "$1"\n')
    for tool in fake.iterdir():
        tool.chmod(0o755)
    result = onemonitor.run_probe([str(fake / "ssh")], "n1", "/var/lib/one/datastores", "", timeout=2)
    assert not result.ok
    assert result.reason.startswith("no answer within 2 s to ssh n1 as ")
    assert result.reason.endswith("(stuck in `mountpoint` of the datastores)"), result.reason
    (fake / "ssh").write_text("#!/bin/sh\nexec sleep 6\n")  # SSH itself never answers
    result = onemonitor.run_probe([str(fake / "ssh")], "n1", "/var/lib/one/datastores", "", timeout=2)
    assert result.reason.endswith("(stuck before the probe started: SSH connection or login)"), result.reason
