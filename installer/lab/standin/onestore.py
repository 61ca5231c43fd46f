"""The onehci stand-in's objects and OpenNebula's rules for them: clusters, hosts,
datastores, virtual networks and the oneadmin user, kept in one JSON file.

Messages and ids follow OpenNebula 7.0's core (src/*/ *Pool.cc, Request.cc); the rules
are the subset onehci relies on. Standard library only: this module ships in the
stand-in package.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

try:
    from . import onetemplate as T
except ImportError:  # run as a script from the package's directory
    import onetemplate as T  # type: ignore[no-redef]

log = logging.getLogger("onehci-standin")

# OpenNebula's error codes (include/Request.h), the second field of a failed call
AUTHENTICATION, AUTHORIZATION, NO_EXISTS = 0x0100, 0x0200, 0x0400
ACTION, XML_RPC_API, INTERNAL, ALLOCATE = 0x0800, 0x1000, 0x2000, 0x4000

# host states (include/Host.h)
INIT, MONITORED, ERROR, DISABLED, OFFLINE = 0, 2, 3, 4, 8
# datastore types
IMAGE_DS, SYSTEM_DS, FILE_DS = 0, 1, 2
DS_TYPES = {"IMAGE_DS": IMAGE_DS, "SYSTEM_DS": SYSTEM_DS, "FILE_DS": FILE_DS}
DEFAULT_CLUSTER = 0
VNET_READY, VNET_LOCK_CREATE = 1, 2

OBJECT_NAMES = {"cluster": "cluster", "host": "host", "datastore": "datastore",
                "vnet": "virtual network", "user": "user"}
POOL_TAGS = {"cluster": "CLUSTER", "host": "HOST", "datastore": "DATASTORE", "vnet": "NET"}

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
_NAME_FORBIDDEN = set("&|:\\\";/\t\n\v\f\r")


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


def _check_name(name: str) -> str | None:
    if not name:
        return "Invalid NAME, it cannot be empty"
    if len(name) > 128:
        return "Invalid NAME, max length is 128 chars"
    if _NAME_FORBIDDEN & set(name):
        return "Invalid NAME, it cannot contain '&', '|', ':', '\\', '\"', ';', '/', tabs or newlines"
    return None


def _parse(text: str) -> T.Template:
    try:
        return T.parse(text)
    except T.TemplateError as err:
        raise OneError(INTERNAL, str(err)) from None


def _update_template(obj: dict, text: str, mode: int) -> T.Template:
    """*.update: mode 0 replaces the template, 1 merges into it."""
    new = _parse(text)
    if mode not in (0, 1):
        raise OneError(XML_RPC_API, "Wrong update type")
    if mode == 0:
        obj["template"] = new
    else:
        T.merge(obj["template"], new)
    return obj["template"]


def _host_view(host: dict) -> dict:
    """What of a host is worth saving and logging: the ERROR message without its stamp."""
    view = dict(host)
    view["template"] = [(key, value.split(" : ", 1)[-1] if key == "ERROR" else value)
                        for key, value in host["template"]]
    return view


class Store:
    """Every object of the stand-in, behind one lock; each change is saved at once."""

    def __init__(self, path: Path, auth_file: Path, ds_location: str) -> None:
        self.path = path
        self.auth_file = auth_file
        self.ds_location = ds_location
        self.lock = threading.RLock()
        # monitoring figures are not persisted, like OpenNebula's monitoring table
        self.monitoring: dict[int, dict] = {}
        self.capacity: dict[int, tuple[int, int, int]] = {}
        if path.exists():
            self._load(json.loads(path.read_text()))
            log.info("state loaded from %s", path)
        else:
            self._bootstrap()
            log.info("fresh state written to %s (cluster 0, datastores 0-2)", path)

    # --- persistence ---------------------------------------------------------------

    def _load(self, data: dict) -> None:
        self.last_oid = {kind: int(oid) for kind, oid in data["last_oid"].items()}
        self.pools: dict[str, dict[int, dict]] = {}
        for kind in ("cluster", "host", "datastore", "vnet"):
            objs = {}
            for obj in data[kind]:
                obj = dict(obj)
                obj["template"] = T.from_json(obj["template"])
                if kind == "vnet":
                    obj["ars"] = [[tuple(pair) for pair in ar] for ar in obj["ars"]]
                objs[obj["id"]] = obj
            self.pools[kind] = objs
        self.oneadmin = data["oneadmin"]

    def save(self) -> None:
        data = {"format": 1, "written_by": "onehci stand-in oned",
                "last_oid": self.last_oid, "oneadmin": self.oneadmin}
        for kind, objs in self.pools.items():
            data[kind] = []
            for obj in objs.values():
                obj = dict(obj, template=T.to_json(obj["template"]))
                data[kind].append(obj)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".standin-state.")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)  # atomic: a crash leaves the old file or the new
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _bootstrap(self) -> None:
        # ids as a fresh OpenNebula: objects made by users start at 100 for clusters
        # and datastores (ClusterPool / DatastorePool reserve 0-99), at 0 for the rest
        self.last_oid = {"cluster": -1, "host": -1, "datastore": -1, "vnet": -1}
        self.pools = {"cluster": {}, "host": {}, "datastore": {}, "vnet": {}}
        # oned sets oneadmin's password from one_auth on its first start only
        self.oneadmin = {"password": hashlib.sha256(self._auth_file_password().encode()).hexdigest()}
        self.cluster_allocate("default")
        for text in ("NAME = system\nTYPE = SYSTEM_DS\nTM_MAD = ssh",
                     "NAME = default\nDS_MAD = fs\nTM_MAD = ssh",
                     "NAME = files\nTYPE = FILE_DS\nDS_MAD = fs\nTM_MAD = ssh"):
            self.ds_allocate(text, DEFAULT_CLUSTER)
        self.pools["datastore"][1]["perms"][6] = 1  # OTHER_U on "default"
        self.last_oid["cluster"] = max(self.last_oid["cluster"], 99)
        self.last_oid["datastore"] = max(self.last_oid["datastore"], 99)
        self.save()

    def _next_id(self, kind: str) -> int:
        self.last_oid[kind] += 1
        return self.last_oid[kind]

    # --- lookups -------------------------------------------------------------------

    def get(self, kind: str, oid: int) -> dict:
        obj = self.pools[kind].get(oid)
        if obj is None:
            raise no_exists(kind, oid)
        return obj

    def _by_name(self, kind: str, name: str) -> dict | None:
        return next((obj for obj in self.pools[kind].values() if obj["name"] == name), None)

    def _check_new_name(self, kind: str, name: str) -> None:
        problem = _check_name(name)
        if problem:
            raise allocate_error(kind, problem)
        taken = self._by_name(kind, name)
        if taken is not None:
            raise allocate_error(kind, f"NAME is already taken by {POOL_TAGS[kind]} {taken['id']}.")

    def _cluster_for_allocate(self, cluster_id: int) -> dict:
        # -1 (ClusterPool::NONE_CLUSTER_ID) means the default cluster
        return self.get("cluster", DEFAULT_CLUSTER if cluster_id == -1 else cluster_id)

    def base_path(self, ds_id: int) -> str:
        location = self.ds_location if self.ds_location.endswith("/") else self.ds_location + "/"
        return f"{location}{ds_id}"

    # --- authentication ------------------------------------------------------------

    def _auth_file_password(self) -> str:
        try:
            text = self.auth_file.read_text().strip()
        except OSError as err:
            log.warning("cannot read %s (%s): no password accepted until it exists",
                        self.auth_file, err.strerror)
            return ""
        user, _, password = text.partition(":")
        return password if user == "oneadmin" else ""

    def authenticate(self, session: str) -> bool:
        user, sep, password = session.partition(":")
        if not sep or user != "oneadmin" or not password:
            return False
        with self.lock:
            if not self.oneadmin["password"] and self._auth_file_password():
                # first start happened before one_auth existed: take it now
                self.oneadmin["password"] = hashlib.sha256(self._auth_file_password().encode()).hexdigest()
                self.save()
            if hashlib.sha256(password.encode()).hexdigest() == self.oneadmin["password"]:
                return True
            if password == self._auth_file_password():
                log.warning("one_auth holds a password other than oneadmin's: OpenNebula takes "
                            "one_auth only on its first start; change it with one.user.passwd")
            return False

    def user_passwd(self, uid: int, password: str) -> int:
        with self.lock:
            if uid != 0:
                raise no_exists("user", uid)
            if not password:
                raise OneError(ACTION, "Invalid password, it can not be empty.")
            self.oneadmin["password"] = hashlib.sha256(password.encode()).hexdigest()
            self.save()
            log.info("oneadmin's password changed (one.user.passwd)")
            return uid

    # --- clusters ------------------------------------------------------------------

    def cluster_allocate(self, name: str) -> int:
        with self.lock:
            self._check_new_name("cluster", name)
            oid = self._next_id("cluster")
            self.pools["cluster"][oid] = {
                "id": oid, "name": name, "hosts": [], "datastores": [], "vnets": [],
                "template": [("RESERVED_CPU", ""), ("RESERVED_MEM", "")]}
            self.save()
            return oid

    def cluster_delete(self, oid: int) -> int:
        with self.lock:
            cluster = self.get("cluster", oid)
            if oid < 100:
                raise OneError(ACTION, "Cannot delete cluster. System Clusters (ID < 100) cannot be deleted.")
            for member in ("hosts", "datastores", "vnets"):
                if cluster[member]:
                    raise OneError(ACTION, f"Cannot delete cluster. Cluster {oid} is not empty, "
                                           f"it contains {len(cluster[member])} {member}.")
            del self.pools["cluster"][oid]
            self.save()
            return oid

    def cluster_add(self, kind: str, cluster_id: int, oid: int) -> int:
        """cluster.addhost / adddatastore / addvnet: a host lives in one cluster, a
        datastore or a network in several."""
        with self.lock:
            cluster = self.get("cluster", cluster_id)
            obj = self.get(kind, oid)
            member = {"host": "hosts", "datastore": "datastores", "vnet": "vnets"}[kind]
            if kind == "host":
                if obj["cluster_id"] == cluster_id:
                    return cluster_id
                old = self.pools["cluster"].get(obj["cluster_id"])
                if old is not None and oid in old["hosts"]:
                    old["hosts"].remove(oid)
                obj["cluster_id"] = cluster_id
            else:
                if cluster_id in obj["clusters"]:
                    return cluster_id
                obj["clusters"] = sorted(obj["clusters"] + [cluster_id])
            cluster[member] = sorted(set(cluster[member]) | {oid})
            self.save()
            return cluster_id

    def cluster_name(self, cluster_id: int) -> str:
        cluster = self.pools["cluster"].get(cluster_id)
        return cluster["name"] if cluster else ""

    # --- hosts ---------------------------------------------------------------------

    def host_allocate(self, name: str, im_mad: str, vm_mad: str, cluster_id: int) -> int:
        with self.lock:
            cluster = self._cluster_for_allocate(cluster_id)
            self._check_new_name("host", name)
            for what, value in (("IM_MAD", im_mad), ("VM_MAD", vm_mad)):
                if not value:
                    raise allocate_error("host", f"{what} cannot be empty.")
            oid = self._next_id("host")
            self.pools["host"][oid] = {
                "id": oid, "name": name, "state": INIT, "prev_state": INIT,
                "im_mad": im_mad, "vm_mad": vm_mad, "cluster_id": cluster["id"],
                "share": {"total_cpu": 0, "total_mem": 0},
                "template": [("IM_MAD", im_mad), ("RESERVED_CPU", ""), ("RESERVED_MEM", ""),
                             ("VM_MAD", vm_mad)]}
            cluster["hosts"] = sorted(cluster["hosts"] + [oid])
            self.save()
            log.info("host %s (%d) added to cluster %s, state INIT", name, oid, cluster["name"])
            return oid

    def _set_state(self, host: dict, state: int) -> None:
        if host["state"] != state:
            host["prev_state"], host["state"] = host["state"], state

    def host_status(self, oid: int, status: int) -> int:
        with self.lock:
            host = self.get("host", oid)
            if status == 0:  # enable: back to MONITORED only if it was monitored before
                was_monitored = host["state"] == DISABLED and host["share"]["total_cpu"] > 0
                self._set_state(host, MONITORED if was_monitored else INIT)
            elif status == 1:
                self._set_state(host, DISABLED)
            elif status == 2:
                self._set_state(host, OFFLINE)
                host["share"] = {"total_cpu": 0, "total_mem": 0}
                self.monitoring.pop(oid, None)
            else:
                raise OneError(XML_RPC_API, "Wrong status code")
            self.save()
            log.info("host %s (%d) status %s, state %d", host["name"], oid,
                     ("enable", "disable", "offline")[status], host["state"])
            return oid

    def host_delete(self, oid: int) -> int:
        with self.lock:
            host = self.get("host", oid)
            cluster = self.pools["cluster"].get(host["cluster_id"])
            if cluster is not None and oid in cluster["hosts"]:
                cluster["hosts"].remove(oid)
            del self.pools["host"][oid]
            self.monitoring.pop(oid, None)
            self.save()
            log.info("host %s (%d) deleted", host["name"], oid)
            return oid

    def hosts_to_probe(self) -> list[tuple[int, str]]:
        """Offline hosts are not monitored; disabled ones are."""
        with self.lock:
            return [(h["id"], h["name"]) for h in self.pools["host"].values() if h["state"] != OFFLINE]

    def apply_probe(self, oid: int, name: str, ok: bool, reason: str, facts: dict) -> None:
        with self.lock:
            host = self.pools["host"].get(oid)
            if host is None or host["name"] != name or host["state"] == OFFLINE:
                return  # deleted, renamed or set offline while the probe ran
            before = copy.deepcopy(host)
            if ok:
                T.erase(host["template"], "ERROR")
                for key in ("HOSTNAME", "ARCH"):
                    if facts.get(key):
                        T.replace(host["template"], key, facts[key])
                T.replace(host["template"], "HYPERVISOR", host["vm_mad"])
                cpus, mem = int(facts.get("CPUS", 0)), int(facts.get("MEMTOTAL", 0))
                host["share"] = {"total_cpu": cpus * 100, "total_mem": mem}
                if host["state"] != DISABLED:
                    self._set_state(host, MONITORED)
                self.monitoring[oid] = {"time": int(time.time()),
                                        "free_mem": int(facts.get("MEMFREE", 0))}
            else:
                message = f"Error monitoring Host {name} ({oid}): {reason}"
                T.replace(host["template"], "ERROR", f"{log_time()} : {message}")
                if host["state"] != DISABLED:
                    self._set_state(host, ERROR)
            now, then = _host_view(host), _host_view(before)
            if now != then:
                if ok:
                    log.info("host %s (%d) monitored, state %d", name, oid, host["state"])
                else:
                    log.warning("host %s (%d) in error (state %d): %s", name, oid, host["state"], reason)
                self.save()

    # --- datastores ----------------------------------------------------------------

    def _apply_tm_mad(self, ds: dict, tm_mad: str) -> None:
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

    def _check_ds_mad(self, ds: dict) -> None:
        if ds["type"] != SYSTEM_DS and ds["ds_mad"] not in DS_MADS:
            raise OneError(ALLOCATE, f'DS_MAD named "{ds["ds_mad"]}" is not defined in oned.conf')

    def ds_allocate(self, text: str, cluster_id: int) -> int:
        with self.lock:
            tmpl = _parse(text)
            cluster = self._cluster_for_allocate(cluster_id)
            name = T.get_str(tmpl, "NAME")
            self._check_new_name("datastore", name)
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
                  "disk_type": 0, "state": 0, "clusters": [cluster["id"]], "template": tmpl,
                  "perms": [1, 1, 0, 1, 0, 0, 0, 0, 0]}
            try:
                self._check_ds_mad(ds)
                self._apply_tm_mad(ds, tm_mad)
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
            ds["id"] = oid = self._next_id("datastore")
            self.pools["datastore"][oid] = ds
            cluster["datastores"] = sorted(cluster["datastores"] + [oid])
            self.save()
            log.info("datastore %s (%d) allocated: TM_MAD %s, DS_MAD %s, path %s",
                     name, oid, tm_mad, ds_mad, self.base_path(oid))
            return oid

    def ds_update(self, oid: int, text: str, mode: int) -> int:
        with self.lock:
            ds = self.get("datastore", oid)
            before = copy.deepcopy(ds)
            tmpl = _update_template(ds, text, mode)
            try:
                # Datastore::post_update_template
                new_type = DS_TYPES.get(T.get_str(tmpl, "TYPE").upper(), ds["type"])
                ds["type"] = SYSTEM_DS if oid == 0 else new_type
                T.replace(tmpl, "TYPE", {v: k for k, v in DS_TYPES.items()}[ds["type"]])
                if T.erase(tmpl, "DISK_TYPE") and ds["type"] != FILE_DS:
                    T.replace(tmpl, "DISK_TYPE", "FILE")
                new_tm = T.get_str(tmpl, "TM_MAD")
                if new_tm:
                    self._apply_tm_mad(ds, new_tm)
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
                self._check_ds_mad(ds)
            except OneError as err:
                self.pools["datastore"][oid] = before
                raise OneError(INTERNAL, err.text) from None
            self.save()
            log.info("datastore %s (%d) template updated (%s)", ds["name"], oid, ("replace", "merge")[mode])
            return oid

    def set_capacity(self, oid: int, figures: tuple[int, int, int] | None) -> None:
        with self.lock:
            if figures is None:
                self.capacity.pop(oid, None)
            else:
                self.capacity[oid] = figures

    # --- virtual networks ----------------------------------------------------------

    def _make_ar(self, vector: list[tuple[str, str]], ar_id: int) -> list[tuple[str, str]]:
        """AddressRange::from_vattr for ETHER and IP4 ranges."""
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
        else:
            ar = [(key, value) for key, value in ar if key != "IP"]
        mac = T.vget(ar, "MAC")
        if mac:
            if len(mac.split(":")) != 6 or not all(len(b) == 2 and all(c in "0123456789abcdefABCDEF" for c in b)
                                                    for b in mac.split(":")):
                raise allocate_error("vnet", "Wrong format for MAC attribute")
        else:
            # MAC_PREFIX 02:00, then the IPv4 address (or, here, the range's position)
            low = int(ip) if ip is not None else (ar_id + 1) << 8
            T.vreplace(ar, "MAC", "02:00:" + ":".join(f"{b:02x}" for b in low.to_bytes(4, "big")))
        try:
            if int(T.vget(ar, "SIZE")) <= 0:
                raise ValueError
        except ValueError:
            raise allocate_error("vnet", "Wrong SIZE for address range") from None
        T.vreplace(ar, "AR_ID", str(ar_id))
        if ar_type in ("IP4", "IP4_6"):
            T.vreplace(ar, "TYPE", ar_type)
        return ar

    def vn_allocate(self, text: str, cluster_id: int) -> int:
        with self.lock:
            tmpl = _parse(text)
            cluster = self._cluster_for_allocate(cluster_id)
            name = T.get_str(tmpl, "NAME")
            if not name:
                raise allocate_error("vnet", "No NAME in template for Virtual Network.")
            self._check_new_name("vnet", name)
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
            ars = [self._make_ar(list(vector), index)
                   for index, vector in enumerate(T.vectors(tmpl, "AR"))]
            T.erase(tmpl, "AR")
            oid = self._next_id("vnet")
            bridge_type = ("openvswitch" if vn_mad.startswith("ovswitch")
                           else "vcenter_port_groups" if vn_mad == "vcenter" else "linux")
            vlan_id = T.get_str(tmpl, "VLAN_ID")
            for key in ("VN_MAD", "PHYDEV", "BRIDGE", "BRIDGE_TYPE", "VLAN_ID", "SECURITY_GROUPS"):
                T.erase(tmpl, key)
            bridge = bridge or (f"onebr.{vlan_id}" if vlan_id else f"onebr{oid}")
            T.replace(tmpl, "VN_MAD", vn_mad)
            T.replace(tmpl, "PHYDEV", phydev)
            T.replace(tmpl, "BRIDGE", bridge)
            T.replace(tmpl, "BRIDGE_TYPE", bridge_type)
            T.replace(tmpl, "SECURITY_GROUPS", "0")
            if vlan_id:
                T.replace(tmpl, "VLAN_ID", vlan_id)
            T.erase(tmpl, "AUTOMATIC_VLAN_ID")
            self.pools["vnet"][oid] = {
                "id": oid, "name": name, "clusters": [cluster["id"]], "bridge": bridge,
                "bridge_type": bridge_type, "vn_mad": vn_mad, "phydev": phydev,
                "vlan_id": vlan_id, "state": VNET_READY, "prev_state": VNET_LOCK_CREATE,
                "template": tmpl, "ars": ars, "perms": [1, 1, 0, 0, 0, 0, 0, 0, 0]}
            cluster["vnets"] = sorted(cluster["vnets"] + [oid])
            self.save()
            log.info("virtual network %s (%d) allocated: %s on bridge %s, %d address range(s)",
                     name, oid, vn_mad, bridge, len(ars))
            return oid

    def vn_update(self, oid: int, text: str, mode: int) -> int:
        with self.lock:
            vnet = self.get("vnet", oid)
            tmpl = _update_template(vnet, text, mode)
            # VirtualNetwork::post_update_template: the driver attributes stay
            T.replace(tmpl, "VN_MAD", vnet["vn_mad"])
            T.replace(tmpl, "PHYDEV", vnet["phydev"])
            new_bridge = T.erase(tmpl, "BRIDGE")
            if isinstance(new_bridge, str) and new_bridge:
                vnet["bridge"] = new_bridge
            T.replace(tmpl, "BRIDGE", vnet["bridge"])
            new_type = T.erase(tmpl, "BRIDGE_TYPE")
            if new_type in ("linux", "openvswitch", "openvswitch_dpdk", "vcenter_port_groups", "none"):
                vnet["bridge_type"] = new_type
            T.replace(tmpl, "BRIDGE_TYPE", vnet["bridge_type"])
            self.save()
            log.info("virtual network %s (%d) template updated (%s)", vnet["name"], oid,
                     ("replace", "merge")[mode])
            return oid
