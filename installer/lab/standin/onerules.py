"""OpenNebula 7.0's rules for the onehci stand-in: error codes and messages, and what
oned makes of a datastore or virtual network template (Datastore::insert and
post_update_template, VirtualNetwork::insert, AddressRange::from_vattr). Pure functions
and a virtual machine's (VirtualMachine::insert, placement rules). Pure functions
on plain dicts; the store (onestore.py) gives ids, locks and saves. Standard library
only: this module ships in the stand-in package."""

from __future__ import annotations

import ipaddress
import re
import time

try:
    from . import onetemplate as T
except ImportError:  # run as a script from the package's directory
    import onetemplate as T  # type: ignore[no-redef]

# error codes (include/Request.h), the third field of a failed call
AUTHENTICATION, AUTHORIZATION, NO_EXISTS = 0x0100, 0x0200, 0x0400
ACTION, XML_RPC_API, INTERNAL, ALLOCATE = 0x0800, 0x1000, 0x2000, 0x4000

# host states (include/Host.h)
INIT, MONITORED, ERROR, DISABLED, OFFLINE = 0, 2, 3, 4, 8
# datastore types
IMAGE_DS, SYSTEM_DS, FILE_DS = 0, 1, 2
DS_TYPES = {"IMAGE_DS": IMAGE_DS, "SYSTEM_DS": SYSTEM_DS, "FILE_DS": FILE_DS}
DEFAULT_CLUSTER = 0
VNET_READY, VNET_LOCK_CREATE = 1, 2
# virtual machine states (include/VirtualMachine.h): STATE, and LCM_STATE while ACTIVE
VM_INIT, PENDING, HOLD, ACTIVE, STOPPED, SUSPENDED, DONE, POWEROFF = 0, 1, 2, 3, 4, 5, 6, 8
LCM_INIT, RUNNING, LCM_UNKNOWN = 0, 3, 16
VM_STATE_NAMES = {VM_INIT: "INIT", PENDING: "PENDING", HOLD: "HOLD", ACTIVE: "ACTIVE",
                  STOPPED: "STOPPED", SUSPENDED: "SUSPENDED", DONE: "DONE", POWEROFF: "POWEROFF"}
LCM_STATE_NAMES = {LCM_INIT: "LCM_INIT", RUNNING: "RUNNING", LCM_UNKNOWN: "UNKNOWN"}
HOST_STATE_NAMES = {INIT: "INIT", MONITORED: "MONITORED", ERROR: "ERROR", DISABLED: "DISABLED",
                    OFFLINE: "OFFLINE"}
# one.vm.action's names (VMActions::action_from_str) for a running VM's life cycle
VM_ACTIONS = {"terminate", "terminate-hard", "undeploy", "undeploy-hard", "hold", "release",
              "stop", "suspend", "resume", "reboot", "reboot-hard", "resched", "unresched",
              "poweroff", "poweroff-hard"}
# history record ACTION values (VMActions::Action)
NONE_ACTION, MIGRATE_ACTION, TERMINATE_ACTION, TERMINATE_HARD_ACTION = 0, 1, 27, 28
# what VirtualMachine::insert keeps in TEMPLATE; the rest of what the user gave is USER_TEMPLATE
VM_TEMPLATE_KEYS = {"CPU", "MEMORY", "VCPU", "MEMORY_MAX", "VCPU_MAX", "CPU_COST", "MEMORY_COST",
                    "DISK_COST", "EMULATOR", "OS", "FEATURES", "INPUT", "GRAPHICS", "VIDEO", "RAW",
                    "CONTEXT", "DISK", "NIC", "NIC_ALIAS", "NIC_DEFAULT", "PCI", "TOPOLOGY",
                    "NUMA_NODE", "SCHED_REQUIREMENTS", "SCHED_DS_REQUIREMENTS", "SUBMIT_ON_HOLD"}

OBJECT_NAMES = {"cluster": "cluster", "host": "host", "datastore": "datastore",
                "vnet": "virtual network", "user": "user", "vm": "virtual machine"}
POOL_TAGS = {"cluster": "CLUSTER", "host": "HOST", "datastore": "DATASTORE", "vnet": "NET", "vm": "VM"}

# oned.conf's TM_MAD_CONF for the transfer drivers the stand-in knows
TM_CONF = {
    "shared": {"LN_TARGET": "NONE", "CLONE_TARGET": "SYSTEM", "SHARED": "YES",
               "TM_MAD_SYSTEM": "ssh", "LN_TARGET_SSH": "SYSTEM",
               "CLONE_TARGET_SSH": "SYSTEM", "DISK_TYPE_SSH": "FILE"},
    "ssh": {"LN_TARGET": "SYSTEM", "CLONE_TARGET": "SYSTEM", "SHARED": "NO"},
    "qcow2": {"LN_TARGET": "NONE", "CLONE_TARGET": "SYSTEM", "SHARED": "YES",
              "DRIVER": "qcow2"},
}
DS_MADS = {"fs"}
BRIDGE_TYPES = {"linux", "openvswitch", "openvswitch_dpdk", "vcenter_port_groups", "none"}
_NAME_FORBIDDEN = set("&|:\\\";/\t\n\v\f\r")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


class OneError(Exception):
    """A failed call: CODE and the text OpenNebula puts after "[method] "."""

    def __init__(self, code: int, text: str, resp_id: int = -1) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.resp_id = resp_id


def no_exists(kind: str, oid: int) -> OneError:
    return OneError(NO_EXISTS, f"Error getting {OBJECT_NAMES[kind]} [{oid}].", oid)


def allocate_error(kind: str, message: str) -> OneError:
    return OneError(ALLOCATE, f"Error allocating a new {OBJECT_NAMES[kind]}. {message}")


def log_time() -> str:
    """one_util::log_time(), the stamp OpenNebula puts before an ERROR message."""
    return time.strftime("%a %b %d %H:%M:%S %Y")


def name_problem(name: str) -> str | None:
    if not name:
        return "Invalid NAME, it cannot be empty"
    if len(name) > 128:
        return "Invalid NAME, max length is 128 chars"
    if _NAME_FORBIDDEN & set(name):
        return "Invalid NAME, it cannot contain '&', '|', ':', '\\', '\"', ';', '/', tabs or newlines"
    return None


def parse(text: str) -> T.Template:
    try:
        return T.parse(text)
    except T.TemplateError as err:
        raise OneError(INTERNAL, str(err)) from None


def update_template(obj: dict, text: str, mode: int) -> T.Template:
    """*.update: mode 0 replaces the template, 1 merges into it."""
    new = parse(text)
    if mode not in (0, 1):
        raise OneError(XML_RPC_API, "Wrong update type")
    if mode == 0:
        obj["template"] = new
    else:
        T.merge(obj["template"], new)
    return obj["template"]


# --- datastores ------------------------------------------------------------------


def _apply_tm_mad(ds: dict, tm_mad: str) -> None:
    conf = TM_CONF.get(tm_mad)
    if conf is None:
        raise OneError(ALLOCATE, f'TM_MAD named "{tm_mad}" is not defined in oned.conf')
    tmpl = ds["template"]
    if ds["type"] == SYSTEM_DS:
        T.replace(tmpl, "SHARED", conf["SHARED"])
        T.replace(tmpl, "DS_MIGRATE", "YES")
        T.erase(tmpl, "LN_TARGET")
        T.erase(tmpl, "CLONE_TARGET")
    else:
        for key, value in conf.items():
            if key != "SHARED":
                T.replace(tmpl, key, value)
        T.erase(tmpl, "SHARED")
    T.replace(tmpl, "ALLOW_ORPHANS", "NO")


def _check_ds_mad(ds: dict) -> None:
    if ds["type"] != SYSTEM_DS and ds["ds_mad"] not in DS_MADS:
        raise OneError(ALLOCATE, f'DS_MAD named "{ds["ds_mad"]}" is not defined in oned.conf')


def new_datastore(tmpl: T.Template, name: str, cluster_id: int) -> dict:
    """Datastore::insert: the datastore (without its id) made of TMPL, NAME removed."""
    T.erase(tmpl, "NAME")
    ds_type = DS_TYPES.get(T.get_str(tmpl, "TYPE").upper(), IMAGE_DS)
    ds_mad = T.get_str(tmpl, "DS_MAD")
    if ds_type == SYSTEM_DS:
        if ds_mad:
            raise allocate_error("datastore", "SYSTEM datastores cannot have DS_MAD defined.")
        ds_mad = "-"
    elif not ds_mad:
        raise allocate_error("datastore", "No DS_MAD in template.")
    tm_mad = T.get_str(tmpl, "TM_MAD")
    if not tm_mad:
        raise allocate_error("datastore", "No TM_MAD in template.")
    ds = {"id": -1, "name": name, "ds_mad": ds_mad, "tm_mad": tm_mad, "type": ds_type,
          "disk_type": 0, "state": 0, "clusters": [cluster_id], "template": tmpl,
          "perms": [1, 1, 0, 1, 0, 0, 0, 0, 0]}
    try:
        _check_ds_mad(ds)
        _apply_tm_mad(ds, tm_mad)
    except OneError as err:
        raise allocate_error("datastore", err.text) from None
    # the path is DATASTORE_LOCATION/ID: OpenNebula drops a BASE_PATH given here
    T.erase(tmpl, "BASE_PATH")
    T.erase(tmpl, "DISK_TYPE")
    if ds_type != FILE_DS:
        T.replace(tmpl, "DISK_TYPE", "FILE")
    if not T.get_str(tmpl, "SAFE_DIRS") and not T.get_str(tmpl, "RESTRICTED_DIRS"):
        T.replace(tmpl, "SAFE_DIRS", "/var/tmp")
        T.replace(tmpl, "RESTRICTED_DIRS", "/")
    return ds


def datastore_post_update(ds: dict) -> None:
    """Datastore::post_update_template: TYPE, TM_MAD and DS_MAD stay unless replaced."""
    tmpl = ds["template"]
    new_type = DS_TYPES.get(T.get_str(tmpl, "TYPE").upper(), ds["type"])
    ds["type"] = SYSTEM_DS if ds["id"] == 0 else new_type
    T.replace(tmpl, "TYPE", {v: k for k, v in DS_TYPES.items()}[ds["type"]])
    if T.erase(tmpl, "DISK_TYPE") and ds["type"] != FILE_DS:
        T.replace(tmpl, "DISK_TYPE", "FILE")
    new_tm = T.get_str(tmpl, "TM_MAD")
    if new_tm:
        _apply_tm_mad(ds, new_tm)
        ds["tm_mad"] = new_tm
    else:
        T.replace(tmpl, "TM_MAD", ds["tm_mad"])
    new_ds_mad = T.get_str(tmpl, "DS_MAD")
    if ds["type"] == SYSTEM_DS:
        ds["ds_mad"] = "-"
        T.erase(tmpl, "DS_MAD")
    elif not new_ds_mad:
        T.replace(tmpl, "DS_MAD", ds["ds_mad"])
    else:
        ds["ds_mad"] = new_ds_mad
    _check_ds_mad(ds)


# --- virtual networks ------------------------------------------------------------


def _address_range(vector: list[tuple[str, str]], ar_id: int) -> list[tuple[str, str]]:
    """AddressRange::from_vattr, checks in OpenNebula's order."""
    ar = [(key, value) for key, value in vector
          if key not in ("ALLOCATED", "USED_LEASES", "LEASES", "PARENT_NETWORK_AR_ID")]
    ar_type = T.vget(ar, "TYPE").upper()
    if ar_type not in ("ETHER", "IP4", "IP6", "IP4_6"):
        raise allocate_error("vnet", "Unknown or missing address range TYPE.")
    ip = None
    if ar_type in ("IP4", "IP4_6"):
        try:
            ip = ipaddress.IPv4Address(T.vget(ar, "IP"))
        except ValueError:
            raise allocate_error("vnet", "Wrong or empty IP attribute") from None
        T.vreplace(ar, "TYPE", ar_type)
    else:
        ar = [(key, value) for key, value in ar if key != "IP"]
    mac = T.vget(ar, "MAC")
    if mac and not _MAC.fullmatch(mac):
        raise allocate_error("vnet", "Wrong format for MAC attribute")
    if not mac:
        # MAC_PREFIX 02:00, then the IPv4 address (oned draws the rest at random otherwise)
        low = int(ip) if ip is not None else (ar_id + 1) << 8
        T.vreplace(ar, "MAC", "02:00:" + ":".join(f"{b:02x}" for b in low.to_bytes(4, "big")))
    try:
        if int(T.vget(ar, "SIZE")) <= 0:
            raise ValueError
    except ValueError:
        raise allocate_error("vnet", "Wrong SIZE for address range") from None
    T.vreplace(ar, "AR_ID", str(ar_id))
    return ar


def new_vnet(tmpl: T.Template, oid: int, cluster_id: int) -> dict:
    """VirtualNetwork::insert: the network made of TMPL; its AR vectors become the range
    pool. The name was checked by the caller."""
    name = T.get_str(tmpl, "NAME")
    T.erase(tmpl, "NAME")
    vn_mad = T.get_str(tmpl, "VN_MAD")
    if not vn_mad:
        raise allocate_error("vnet", "No VN_MAD in template for Virtual Network.")
    phydev = T.get_str(tmpl, "PHYDEV")
    bridge = T.get_str(tmpl, "BRIDGE")
    if vn_mad in ("802.1Q", "vxlan") and not phydev:
        raise allocate_error("vnet", f"PHYDEV is mandatory for driver {vn_mad}")
    if vn_mad == "dummy" and not bridge:
        raise allocate_error("vnet", f"BRIDGE is mandatory for driver {vn_mad}")
    ars = [_address_range(list(vector), index) for index, vector in enumerate(T.vectors(tmpl, "AR"))]
    T.erase(tmpl, "AR")
    bridge_type = ("openvswitch" if vn_mad.startswith("ovswitch")
                   else "vcenter_port_groups" if vn_mad == "vcenter" else "linux")
    vlan_id = T.get_str(tmpl, "VLAN_ID")
    for key in ("VN_MAD", "PHYDEV", "BRIDGE", "BRIDGE_TYPE", "VLAN_ID", "SECURITY_GROUPS",
                "AUTOMATIC_VLAN_ID"):
        T.erase(tmpl, key)
    bridge = bridge or (f"onebr.{vlan_id}" if vlan_id else f"onebr{oid}")
    tmpl += [("VN_MAD", vn_mad), ("PHYDEV", phydev), ("BRIDGE", bridge),
             ("BRIDGE_TYPE", bridge_type), ("SECURITY_GROUPS", "0")]
    if vlan_id:
        tmpl.append(("VLAN_ID", vlan_id))
    return {"id": oid, "name": name, "clusters": [cluster_id], "bridge": bridge,
            "bridge_type": bridge_type, "vn_mad": vn_mad, "phydev": phydev,
            "vlan_id": vlan_id, "state": VNET_READY, "prev_state": VNET_LOCK_CREATE,
            "template": tmpl, "ars": ars, "perms": [1, 1, 0, 0, 0, 0, 0, 0, 0]}


def vnet_post_update(vnet: dict) -> None:
    """VirtualNetwork::post_update_template: the driver attributes stay."""
    tmpl = vnet["template"]
    T.replace(tmpl, "VN_MAD", vnet["vn_mad"])
    T.replace(tmpl, "PHYDEV", vnet["phydev"])
    new_bridge = T.erase(tmpl, "BRIDGE")
    if isinstance(new_bridge, str) and new_bridge:
        vnet["bridge"] = new_bridge
    T.replace(tmpl, "BRIDGE", vnet["bridge"])
    new_type = T.erase(tmpl, "BRIDGE_TYPE")
    if new_type in BRIDGE_TYPES:
        vnet["bridge_type"] = new_type
    T.replace(tmpl, "BRIDGE_TYPE", vnet["bridge_type"])


# --- virtual machines ------------------------------------------------------------


def vm_state_str(vm: dict) -> str:
    """VirtualMachine::state_str: the LCM state's name while ACTIVE, else the state's."""
    if vm["state"] == ACTIVE:
        return LCM_STATE_NAMES.get(vm["lcm_state"], str(vm["lcm_state"]))
    return VM_STATE_NAMES.get(vm["state"], str(vm["state"]))


def _positive(tmpl: T.Template, name: str, kind) -> bool:
    value = T.get(tmpl, name)
    if not isinstance(value, str):
        return False
    try:
        return kind(value.strip()) > 0
    except ValueError:
        return False


def new_vm(tmpl: T.Template, oid: int, hold: bool, now: int) -> dict:
    """VirtualMachine::insert, the part the stand-in models: NAME (one-ID when missing),
    MEMORY (MB, a positive integer), CPU (a positive number), VCPU (optional, a positive
    integer); the well-known attributes go to TEMPLATE, the others to USER_TEMPLATE."""
    name = T.get_str(tmpl, "NAME") or f"one-{oid}"
    T.erase(tmpl, "NAME")
    problem = name_problem(name)
    if problem:
        raise allocate_error("vm", problem)
    if not _positive(tmpl, "MEMORY", int):
        raise allocate_error("vm", "MEMORY attribute must be a positive integer value.")
    if not _positive(tmpl, "CPU", float):
        raise allocate_error("vm", "CPU attribute must be a positive float or integer value.")
    if T.get(tmpl, "VCPU") is not None and not _positive(tmpl, "VCPU", int):
        raise allocate_error("vm", "VCPU attribute must be a positive integer value.")
    system = [(k, v) for k, v in tmpl if k in VM_TEMPLATE_KEYS]
    user = [(k, v) for k, v in tmpl if k not in VM_TEMPLATE_KEYS]
    system.append(("VMID", str(oid)))
    state = HOLD if hold or T.get_str(tmpl, "SUBMIT_ON_HOLD").upper() == "YES" else PENDING
    return {"id": oid, "name": name, "state": state, "lcm_state": LCM_INIT,
            "prev_state": state, "prev_lcm_state": LCM_INIT, "resched": 0,
            "stime": now, "etime": 0, "deploy_id": "", "template": system,
            "user_template": user, "history": []}


def vm_capacity(vm: dict) -> tuple[int, int]:
    """What the VM takes of a host's share: CPU x 100 and MEMORY in KB (HostShare units)."""
    cpu = float(T.get_str(vm["template"], "CPU") or 0)
    memory = int(T.get_str(vm["template"], "MEMORY") or 0)
    return int(round(cpu * 100)), memory * 1024


def new_history(vm: dict, host: dict, ds_id: int, tm_mad: str, now: int) -> dict:
    """VirtualMachine::add_history: a new record, SEQ one past the last."""
    return {"seq": len(vm["history"]), "hid": host["id"], "hostname": host["name"],
            "cid": host["cluster_id"], "stime": now, "etime": 0, "vm_mad": host["vm_mad"],
            "tm_mad": tm_mad, "ds_id": ds_id, "action": NONE_ACTION}


def state_error(action: str, vm: dict) -> OneError:
    return OneError(ACTION, f'Error performing action "{action}": '
                            f"This action is not available for state {vm_state_str(vm)}")
