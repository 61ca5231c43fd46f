"""Every method the stand-in serves, called once, and every XML document it answers read by
pyone's own generated bindings: the document's root has its binding class, and every
element (outside the free-form templates pyone turns into dicts) is one the bindings know,
with its value, so that nothing the stand-in writes is silently dropped by pyone."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

from pyone import bindings

from installer.lab.standin import oned
from tests.standin_daemon import PASSWORD, wait_for

FREE_FORM = {"TEMPLATE", "USER_TEMPLATE"}  # pyone reads these into dicts, not bindings
ROOTS = {"user.info": "USER", "clusterpool.info": "CLUSTER_POOL", "cluster.info": "CLUSTER",
         "hostpool.info": "HOST_POOL", "host.info": "HOST", "datastorepool.info": "DATASTORE_POOL",
         "datastore.info": "DATASTORE", "vnpool.info": "VNET_POOL", "vn.info": "VNET",
         "vmpool.info": "VM_POOL", "vmpool.infoextended": "VM_POOL", "vm.info": "VM"}


def leaves(text: str) -> set[tuple[str, str]]:
    """(path, text) of every element outside free-form templates."""
    found = set()

    def walk(element, path):
        path = f"{path}/{element.tag}"
        if element.tag in FREE_FORM:
            found.add((path, "<free-form>"))
            return
        found.add((path, (element.text or "").strip() if len(element) == 0 else ""))
        for child in element:
            walk(child, path)

    walk(ET.fromstring(text), "")
    return found


def detach_templates(obj) -> int:
    """Set aside the free-form templates pyone read into dicts (its generated export cannot
    write a dict back where a binding class stands, as in VM_POOL's VM); how many there were."""
    count = 0
    for name, value in list(vars(obj).items()):
        if name.endswith("_"):  # generateDS's own fields (parent object, node, namespace)
            continue
        if name in FREE_FORM and isinstance(value, dict):
            setattr(obj, name, None)
            count += 1
        elif isinstance(value, list):
            count += sum(detach_templates(item) for item in value if hasattr(item, "export"))
        elif hasattr(value, "export") and hasattr(value, "__dict__"):
            count += detach_templates(value)
    return count


def test_every_method_answers_what_pyone_bindings_read(standin, tmp_path):
    for name in ("100", "101"):  # the datastores' directories: their sizes get measured
        (tmp_path / "ds" / name).mkdir(parents=True)
    (tmp_path / "fake/bin/mountpoint").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "fake/bin/mountpoint").chmod(0o755)
    daemon = standin("--monitor-interval", "0.2", location=str(tmp_path / "ds"))
    calls: list[tuple[str, tuple, object]] = []

    def call(method: str, *params):
        answer = daemon.raw(f"one.{method}", *params)
        assert answer[0] is True, (method, answer)
        calls.append((method, params, answer[1]))
        return answer[1]

    call("system.version")
    call("user.info", -1)
    call("user.info", 0, True)
    call("user.passwd", 0, PASSWORD)
    cluster = call("cluster.allocate", "docs")
    spare = call("cluster.allocate", "spare")
    good = call("host.allocate", "good", "kvm", "kvm", cluster)
    broken = call("host.allocate", "novirsh", "kvm", "kvm", -1)  # the fake virsh fails there
    second = call("host.allocate", "other", "kvm", "kvm", cluster)
    off = call("host.allocate", "off", "kvm", "kvm", -1)
    gone = call("host.allocate", "gone", "kvm", "kvm", -1)
    system = call("datastore.allocate", 'NAME = "sys"\nTYPE = SYSTEM_DS\nTM_MAD = shared', -1)
    image = call("datastore.allocate", 'NAME = "img"\nDS_MAD = fs\nTM_MAD = shared', cluster)
    vnet = call("vn.allocate", 'NAME = "net"\nVN_MAD = bridge\nBRIDGE = br0\n'
                'AR = [ TYPE = IP4, IP = "10.0.0.10", SIZE = 5 ]\nAR = [ TYPE = ETHER, SIZE = 2 ]', -1)
    call("cluster.addhost", cluster, broken)
    call("cluster.adddatastore", cluster, system)
    call("cluster.addvnet", cluster, vnet)
    call("cluster.delete", spare)
    call("host.status", off, 1)
    call("host.delete", gone)
    call("datastore.update", image, 'LIMIT_MB = "100"', 1)
    call("vn.update", vnet, 'GATEWAY = "10.0.0.1"', 1)
    wait_for(lambda: daemon.one().host.info(good).STATE == 2 and daemon.one().host.info(broken).STATE == 3
             and daemon.one().host.info(second).STATE == 2
             and daemon.one().datastore.info(image).TOTAL_MB > 0, "good monitored, novirsh in error, sizes")
    # VMs: one pending, one running after a move (two history records), one done
    pending = call("vm.allocate", 'NAME = "waits"\nCPU = 0.1\nMEMORY = 64\nLABEL = "x"', False)
    vm = call("vm.allocate", 'NAME = "runs"\nCPU = 0.1\nMEMORY = 64\nVCPU = 1\n'
              'GRAPHICS = [ TYPE = "vnc" ]\nCONTEXT = [ NETWORK = "YES" ]', True)
    done = call("vm.allocate", 'CPU = 1\nMEMORY = 32', False)
    call("vm.deploy", vm, good, False, system)
    call("vm.deploy", done, good)
    call("vm.action", "terminate-hard", done)
    call("host.status", good, 1)
    call("vm.action", "resched", vm)
    wait_for(lambda: daemon.one().vm.info(vm).HISTORY_RECORDS.HISTORY[-1].HID == second,
             "the VM moved to the second monitored host", timeout=15)
    call("clusterpool.info")
    call("cluster.info", cluster)
    call("cluster.info", cluster, True)
    call("hostpool.info")
    for host in (good, broken, off):
        call("host.info", host)
    call("host.info", good, True)
    call("datastorepool.info")
    for ds in (0, system, image):
        call("datastore.info", ds)
    call("datastore.info", image, True)
    call("vnpool.info", -2, -1, -1)
    call("vn.info", vnet)
    call("vn.info", vnet, True)
    call("vmpool.info", -2, -1, -1, -1)
    call("vmpool.info", -2, -1, -1, -2)
    call("vmpool.infoextended", -2, -1, -1, -2)
    for one_vm in (pending, vm, done):
        call("vm.info", one_vm)
    call("vm.info", vm, True)
    call("host.info", second)

    # a method the stand-in gains without a call here fails this test
    assert {method for method, _, _ in calls} == set(oned.API)
    documents = 0
    for method, params, value in calls:
        if not (isinstance(value, str) and value.startswith("<")):
            assert method not in ROOTS, (method, value)
            continue
        documents += 1
        parsed = bindings.parseString(value.encode())
        assert type(parsed).__name__ == ROOTS[method] + "Sub", (method, params)
        sent = leaves(value)
        free_form = value.count("<TEMPLATE>") + value.count("<USER_TEMPLATE>")
        assert detach_templates(parsed) == free_form, (method, params)  # each read as a dict
        exported = io.StringIO()
        parsed.export(exported, 0)
        lost = {leaf for leaf in sent if leaf[1] != "<free-form>"} - leaves(exported.getvalue())
        assert not lost, (method, params, sorted(lost))
    assert documents == 26
    # a host lists the VMs placed on it; the pool carries the done VM only when asked
    placed = next(v for m, p, v in calls if m == "host.info" and p == (second,))
    assert f"<VMS><ID>{vm}</ID></VMS>" in placed and "<RUNNING_VMS>1</RUNNING_VMS>" in placed
    pools = [v for m, p, v in calls if m.startswith("vmpool.")]
    assert pools[0].count("<VM>") == 2 and pools[1].count("<VM>") == pools[2].count("<VM>") == 3
    # the states that shape a host's document were all there
    assert "<STATE>3</STATE>" in next(v for m, p, v in calls if m == "host.info" and p == (broken,))
    assert "<STATE>4</STATE>" in next(v for m, p, v in calls if m == "host.info" and p == (off,))
