"""The XML documents of the onehci stand-in, shaped as OpenNebula 7.0 writes them
(Host::to_xml, Datastore::to_xml, ...) so that pyone's generated bindings parse them.
Standard library only: this module ships in the stand-in package."""

from __future__ import annotations

from xml.sax.saxutils import escape

try:
    from . import onestore as S
    from . import onetemplate as T
except ImportError:  # run as a script from the package's directory
    import onestore as S  # type: ignore[no-redef]
    import onetemplate as T  # type: ignore[no-redef]

_PERM_TAGS = ("OWNER_U", "OWNER_M", "OWNER_A", "GROUP_U", "GROUP_M", "GROUP_A",
              "OTHER_U", "OTHER_M", "OTHER_A")


def _tags(**values) -> str:
    return "".join(f"<{tag}>{escape(str(value))}</{tag}>" for tag, value in values.items())


def _ids(tag: str, ids) -> str:
    return f"<{tag}>" + "".join(f"<ID>{i}</ID>" for i in sorted(ids)) + f"</{tag}>"


def _owner() -> str:
    return _tags(UID=0, GID=0, UNAME="oneadmin", GNAME="oneadmin")


def _perms(perms: list[int]) -> str:
    return "<PERMISSIONS>" + "".join(f"<{t}>{v}</{t}>" for t, v in zip(_PERM_TAGS, perms)) + "</PERMISSIONS>"


# --- clusters --------------------------------------------------------------------


def cluster(store: S.Store, obj: dict) -> str:
    return ("<CLUSTER>" + _tags(ID=obj["id"], NAME=obj["name"])
            + _ids("HOSTS", obj["hosts"]) + _ids("DATASTORES", obj["datastores"])
            + _ids("VNETS", obj["vnets"]) + T.to_xml(obj["template"]) + "</CLUSTER>")


# --- hosts -----------------------------------------------------------------------


def _host_share(store: S.Store, obj: dict) -> str:
    share = obj["share"]
    cpu_usage, mem_usage = store.host_usage(obj["id"])  # what the VMs placed there take
    return ("<HOST_SHARE>"
            + _tags(MEM_USAGE=mem_usage, CPU_USAGE=cpu_usage, TOTAL_MEM=share["total_mem"],
                    TOTAL_CPU=share["total_cpu"], MAX_MEM=share["total_mem"],
                    MAX_CPU=share["total_cpu"], RUNNING_VMS=len(store.vms_on(obj["id"])), VMS_THREAD=1)
            + "<DATASTORES>" + _tags(DISK_USAGE=0, FREE_DISK=0, MAX_DISK=0, USED_DISK=0)
            + "</DATASTORES><PCI_DEVICES></PCI_DEVICES><NUMA_NODES></NUMA_NODES></HOST_SHARE>")


def _monitoring(store: S.Store, obj: dict) -> str:
    mon = store.monitoring.get(obj["id"])
    if mon is None:
        return "<MONITORING/>"
    total_mem = obj["share"]["total_mem"]
    return ("<MONITORING>" + _tags(TIMESTAMP=mon["time"], ID=obj["id"])
            + "<CAPACITY>" + _tags(FREE_CPU=obj["share"]["total_cpu"], FREE_MEMORY=mon["free_mem"],
                                   USED_CPU=0, USED_MEMORY=max(total_mem - mon["free_mem"], 0))
            + "</CAPACITY><SYSTEM>" + _tags(NETRX=0, NETTX=0) + "</SYSTEM></MONITORING>")


def host(store: S.Store, obj: dict) -> str:
    return ("<HOST>" + _tags(ID=obj["id"], NAME=obj["name"], STATE=obj["state"],
                             PREV_STATE=obj["prev_state"], IM_MAD=obj["im_mad"],
                             VM_MAD=obj["vm_mad"], CLUSTER_ID=obj["cluster_id"],
                             CLUSTER=store.cluster_name(obj["cluster_id"]))
            + _host_share(store, obj) + _ids("VMS", [vm["id"] for vm in store.vms_on(obj["id"])])
            + T.to_xml(obj["template"])
            + _monitoring(store, obj) + "</HOST>")


# --- datastores ------------------------------------------------------------------


def datastore(store: S.Store, obj: dict) -> str:
    total, free, used = store.capacity.get(obj["id"], (0, 0, 0))
    return ("<DATASTORE>" + _tags(ID=obj["id"]) + _owner() + _tags(NAME=obj["name"])
            + _perms(obj["perms"])
            + _tags(DS_MAD=obj["ds_mad"], TM_MAD=obj["tm_mad"], BASE_PATH=store.base_path(obj["id"]),
                    TYPE=obj["type"], DISK_TYPE=obj["disk_type"], STATE=obj["state"])
            + _ids("CLUSTERS", obj["clusters"])
            + _tags(TOTAL_MB=total, FREE_MB=free, USED_MB=used)
            + "<IMAGES></IMAGES>" + T.to_xml(obj["template"]) + "</DATASTORE>")


# --- virtual networks ------------------------------------------------------------


def _ar_extended(ar: list[tuple[str, str]]) -> str:
    """AddressRange::to_xml for vn.info: the range's attributes, then its ends."""
    size = int(T.vget(ar, "SIZE"))
    mac = int(T.vget(ar, "MAC").replace(":", ""), 16)
    mac_end = (mac + size - 1).to_bytes(6, "big")
    out = "<AR>" + "".join(f"<{k}>{T.cdata(v)}</{k}>" for k, v in sorted(ar) if k != "ALLOCATED")
    out += f"<MAC_END>{':'.join(f'{b:02x}' for b in mac_end)}</MAC_END>"
    if T.vget(ar, "IP"):
        first = [int(part) for part in T.vget(ar, "IP").split(".")]
        end = int.from_bytes(bytes(first), "big") + size - 1
        out += "<IP_END>" + ".".join(str(b) for b in end.to_bytes(4, "big")) + "</IP_END>"
    return out + "<USED_LEASES>0</USED_LEASES><LEASES></LEASES></AR>"


def _ar_pool_entry(ar: list[tuple[str, str]]) -> str:
    """The range as the pool lists it: its stored attributes, ALLOCATED included."""
    pairs = sorted(ar + [("ALLOCATED", "")])
    return "<AR>" + "".join(f"<{k}>{T.cdata(v)}</{k}>" for k, v in pairs) + "</AR>"


def vnet(store: S.Store, obj: dict, extended: bool = True) -> str:
    ars = "".join(_ar_extended(ar) if extended else _ar_pool_entry(ar) for ar in obj["ars"])
    vlan = f"<VLAN_ID>{escape(obj['vlan_id'])}</VLAN_ID>" if obj["vlan_id"] else "<VLAN_ID/>"
    phydev = f"<PHYDEV>{escape(obj['phydev'])}</PHYDEV>" if obj["phydev"] else "<PHYDEV/>"
    return ("<VNET>" + _tags(ID=obj["id"]) + _owner() + _tags(NAME=obj["name"])
            + "<LOCK/>" + _perms(obj["perms"]) + _ids("CLUSTERS", obj["clusters"])
            + _tags(BRIDGE=obj["bridge"], BRIDGE_TYPE=obj["bridge_type"], STATE=obj["state"],
                    PREV_STATE=obj["prev_state"])
            + "<PARENT_NETWORK_ID/>" + _tags(VN_MAD=obj["vn_mad"]) + phydev + vlan
            + "<OUTER_VLAN_ID/>" + _tags(VLAN_ID_AUTOMATIC=0, OUTER_VLAN_ID_AUTOMATIC=0, USED_LEASES=0)
            + "<VROUTERS></VROUTERS><UPDATED_VMS></UPDATED_VMS><OUTDATED_VMS></OUTDATED_VMS>"
            + "<UPDATING_VMS></UPDATING_VMS><ERROR_VMS></ERROR_VMS>"
            + T.to_xml(obj["template"]) + f"<AR_POOL>{ars}</AR_POOL></VNET>")


# --- virtual machines ------------------------------------------------------------


def _history(record: dict, vm_id: int, full: bool) -> str:
    """History::to_xml (vm.info) or to_xml_short (the pool): one placement of the VM."""
    if not full:
        return ("<HISTORY>" + _tags(OID=vm_id, SEQ=record["seq"], HOSTNAME=record["hostname"],
                                    HID=record["hid"], CID=record["cid"], DS_ID=record["ds_id"],
                                    VM_MAD=record["vm_mad"], TM_MAD=record["tm_mad"],
                                    ACTION=record["action"]) + "</HISTORY>")
    return ("<HISTORY>" + _tags(OID=vm_id, SEQ=record["seq"], HOSTNAME=record["hostname"],
                                HID=record["hid"], CID=record["cid"], STIME=record["stime"],
                                ETIME=record["etime"], VM_MAD=record["vm_mad"], TM_MAD=record["tm_mad"],
                                DS_ID=record["ds_id"], PLAN_ID=-1, ACTION_ID=-1,
                                PSTIME=record["stime"], PETIME=record["stime"], RSTIME=record["stime"],
                                RETIME=record["etime"], ESTIME=0, EETIME=0, ACTION=record["action"],
                                UID=-1, GID=-1, REQUEST_ID=-1) + "</HISTORY>")


def vm(store: S.Store, obj: dict, full: bool = True) -> str:
    """VirtualMachine::to_xml for vm.info; the pools' shorter form (to_xml_short: the last
    history record only, no permissions or previous states) with FULL false."""
    records = obj["history"] if full else obj["history"][-1:]
    history = "<HISTORY_RECORDS>" + "".join(_history(r, obj["id"], full) for r in records) \
        + "</HISTORY_RECORDS>"
    head = "<VM>" + _tags(ID=obj["id"]) + _owner() + _tags(NAME=obj["name"])
    if full:
        head += _perms([1, 1, 0, 0, 0, 0, 0, 0, 0])
    head += _tags(LAST_POLL=0, STATE=obj["state"], LCM_STATE=obj["lcm_state"])
    if full:
        head += _tags(PREV_STATE=obj["prev_state"], PREV_LCM_STATE=obj["prev_lcm_state"])
    head += _tags(RESCHED=obj["resched"], STIME=obj["stime"], ETIME=obj["etime"],
                  DEPLOY_ID=obj["deploy_id"])
    return (head + "<MONITORING></MONITORING>" + T.to_xml(obj["template"])
            + T.to_xml(obj["user_template"], "USER_TEMPLATE") + history + "</VM>")


# --- users and pools -------------------------------------------------------------


def user(store: S.Store) -> str:
    quotas = "<DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA>" \
             "<VM_QUOTA></VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA>"
    return ("<USER>" + _tags(ID=0, GID=0) + _ids("GROUPS", [0])
            + _tags(GNAME="oneadmin", NAME="oneadmin", PASSWORD=store.oneadmin["password"],
                    AUTH_DRIVER="core", ENABLED=1)
            + "<TEMPLATE></TEMPLATE>" + quotas
            + f"<DEFAULT_USER_QUOTAS>{quotas}</DEFAULT_USER_QUOTAS></USER>")


def pool(store: S.Store, kind: str, objs, **options) -> str:
    render = {"cluster": cluster, "host": host, "datastore": datastore, "vnet": vnet, "vm": vm}[kind]
    tag = {"cluster": "CLUSTER_POOL", "host": "HOST_POOL", "datastore": "DATASTORE_POOL",
           "vnet": "VNET_POOL", "vm": "VM_POOL"}[kind]
    body = "".join(render(store, obj, **options) for obj in sorted(objs, key=lambda o: o["id"]))
    return f"<{tag}>{body}</{tag}>"

