"""The onehci stand-in's objects: clusters, hosts, datastores, virtual networks, virtual
machines (placement only) and the oneadmin user, behind one lock and kept in one JSON
file, with ids given as OpenNebula 7.0 gives them. What oned makes of a template is in onerules.py. Standard library only:
this module ships in the stand-in package.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

try:
    from . import onerules as R
    from . import onetemplate as T
except ImportError:  # run as a script from the package's directory
    import onerules as R  # type: ignore[no-redef]
    import onetemplate as T  # type: ignore[no-redef]

log = logging.getLogger("onehci-standin")
KINDS = ("cluster", "host", "datastore", "vnet", "vm")


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


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
        self.unplaceable: set[int] = set()  # VMs the scheduler already said it cannot move
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
        self.last_oid.setdefault("vm", -1)  # a state file written before VMs existed
        self.pools: dict[str, dict[int, dict]] = {}
        for kind in KINDS:
            objs = {}
            for obj in data.get(kind, []) if kind == "vm" else data[kind]:
                obj = dict(obj)
                obj["template"] = T.from_json(obj["template"])
                if kind == "vnet":
                    obj["ars"] = [[tuple(pair) for pair in ar] for ar in obj["ars"]]
                if kind == "vm":
                    obj["user_template"] = T.from_json(obj["user_template"])
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
                if kind == "vm":
                    obj["user_template"] = T.to_json(obj["user_template"])
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
        self.last_oid = {kind: -1 for kind in KINDS}
        self.pools = {kind: {} for kind in KINDS}
        # oned sets oneadmin's password from one_auth on its first start only
        first = self._auth_file_password()
        self.oneadmin = {"password": _digest(first) if first else ""}
        self.cluster_allocate("default")
        for text in ("NAME = system\nTYPE = SYSTEM_DS\nTM_MAD = ssh",
                     "NAME = default\nDS_MAD = fs\nTM_MAD = ssh",
                     "NAME = files\nTYPE = FILE_DS\nDS_MAD = fs\nTM_MAD = ssh"):
            self.ds_allocate(text, R.DEFAULT_CLUSTER)
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
            raise R.no_exists(kind, oid)
        return obj

    def _by_name(self, kind: str, name: str) -> dict | None:
        return next((obj for obj in self.pools[kind].values() if obj["name"] == name), None)

    def _check_new_name(self, kind: str, name: str) -> None:
        problem = R.name_problem(name)
        if problem:
            raise R.allocate_error(kind, problem)
        taken = self._by_name(kind, name)
        if taken is not None:
            raise R.allocate_error(kind, f"NAME is already taken by {R.POOL_TAGS[kind]} {taken['id']}.")

    def _cluster_for_allocate(self, cluster_id: int) -> dict:
        # -1 (ClusterPool::NONE_CLUSTER_ID) means the default cluster
        return self.get("cluster", R.DEFAULT_CLUSTER if cluster_id == -1 else cluster_id)

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
                self.oneadmin["password"] = _digest(self._auth_file_password())
                self.save()
            if _digest(password) == self.oneadmin["password"]:
                return True
            if password == self._auth_file_password():
                log.warning("one_auth holds a password other than oneadmin's: OpenNebula takes "
                            "one_auth only on its first start; change it with one.user.passwd")
            return False

    def user_passwd(self, uid: int, password: str) -> int:
        with self.lock:
            if uid != 0:
                raise R.no_exists("user", uid)
            if not password:
                raise R.OneError(R.ACTION, "Invalid password, it can not be empty.")
            self.oneadmin["password"] = _digest(password)
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
                raise R.OneError(R.ACTION, "Cannot delete cluster. System Clusters (ID < 100) cannot be deleted.")
            for member in ("hosts", "datastores", "vnets"):
                if cluster[member]:
                    raise R.OneError(R.ACTION, f"Cannot delete cluster. Cluster {oid} is not empty, "
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
                    raise R.allocate_error("host", f"{what} cannot be empty.")
            oid = self._next_id("host")
            self.pools["host"][oid] = {
                "id": oid, "name": name, "state": R.INIT, "prev_state": R.INIT,
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
                was_monitored = host["state"] == R.DISABLED and host["share"]["total_cpu"] > 0
                self._set_state(host, R.MONITORED if was_monitored else R.INIT)
            elif status == 1:
                self._set_state(host, R.DISABLED)
            elif status == 2:
                self._set_state(host, R.OFFLINE)
                host["share"] = {"total_cpu": 0, "total_mem": 0}
                self.monitoring.pop(oid, None)
            else:
                raise R.OneError(R.XML_RPC_API, "Wrong status code")
            self.save()
            log.info("host %s (%d) status %s, state %d", host["name"], oid,
                     ("enable", "disable", "offline")[status], host["state"])
            return oid

    def host_delete(self, oid: int) -> int:
        with self.lock:
            host = self.get("host", oid)
            if self.vms_on(oid):  # HostPool::drop: the host's share still counts them
                raise R.OneError(R.ACTION, "Cannot delete host. Can not remove a host with running VMs",
                                 oid)
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
            return [(h["id"], h["name"]) for h in self.pools["host"].values() if h["state"] != R.OFFLINE]

    def apply_probe(self, oid: int, name: str, ok: bool, reason: str, facts: dict) -> None:
        with self.lock:
            host = self.pools["host"].get(oid)
            if host is None or host["name"] != name or host["state"] == R.OFFLINE:
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
                if host["state"] != R.DISABLED:
                    self._set_state(host, R.MONITORED)
                self.monitoring[oid] = {"time": int(time.time()),
                                        "free_mem": int(facts.get("MEMFREE", 0))}
            else:
                message = f"Error monitoring Host {name} ({oid}): {reason}"
                T.replace(host["template"], "ERROR", f"{R.log_time()} : {message}")
                if host["state"] != R.DISABLED:
                    self._set_state(host, R.ERROR)
            now, then = _host_view(host), _host_view(before)
            if now != then:
                if ok:
                    log.info("host %s (%d) monitored, state %d", name, oid, host["state"])
                else:
                    log.warning("host %s (%d) in error (state %d): %s", name, oid, host["state"], reason)
                self.save()

    # --- datastores ----------------------------------------------------------------

    def ds_allocate(self, text: str, cluster_id: int) -> int:
        with self.lock:
            tmpl = R.parse(text)
            cluster = self._cluster_for_allocate(cluster_id)
            name = T.get_str(tmpl, "NAME")
            self._check_new_name("datastore", name)
            ds = R.new_datastore(tmpl, name, cluster["id"])
            ds["id"] = oid = self._next_id("datastore")
            self.pools["datastore"][oid] = ds
            cluster["datastores"] = sorted(cluster["datastores"] + [oid])
            self.save()
            log.info("datastore %s (%d) allocated: TM_MAD %s, DS_MAD %s, path %s",
                     name, oid, ds["tm_mad"], ds["ds_mad"], self.base_path(oid))
            return oid

    def ds_update(self, oid: int, text: str, mode: int) -> int:
        with self.lock:
            ds = self.get("datastore", oid)
            before = copy.deepcopy(ds)
            R.update_template(ds, text, mode)
            try:
                R.datastore_post_update(ds)
            except R.OneError as err:
                self.pools["datastore"][oid] = before  # a refused update changes nothing
                raise R.OneError(R.INTERNAL, err.text) from None
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

    def vn_allocate(self, text: str, cluster_id: int) -> int:
        with self.lock:
            tmpl = R.parse(text)
            cluster = self._cluster_for_allocate(cluster_id)
            name = T.get_str(tmpl, "NAME")
            if not name:
                raise R.allocate_error("vnet", "No NAME in template for Virtual Network.")
            self._check_new_name("vnet", name)
            # the id is taken only once the network is made (the default bridge names it)
            vnet = R.new_vnet(tmpl, self.last_oid["vnet"] + 1, cluster["id"])
            oid = self._next_id("vnet")
            self.pools["vnet"][oid] = vnet
            cluster["vnets"] = sorted(cluster["vnets"] + [oid])
            self.save()
            log.info("virtual network %s (%d) allocated: %s on bridge %s, %d address range(s)",
                     name, oid, vnet["vn_mad"], vnet["bridge"], len(vnet["ars"]))
            return oid

    def vn_update(self, oid: int, text: str, mode: int) -> int:
        with self.lock:
            vnet = self.get("vnet", oid)
            R.update_template(vnet, text, mode)
            R.vnet_post_update(vnet)
            self.save()
            log.info("virtual network %s (%d) template updated (%s)", vnet["name"], oid,
                     ("replace", "merge")[mode])
            return oid

    # --- virtual machines: placement only --------------------------------------------

    def vms_on(self, hid: int) -> list[dict]:
        """The VMs a host's share counts: placed there (last history record) and not
        gone from it (PENDING, HOLD and DONE hold no host)."""
        return [vm for vm in self.pools["vm"].values()
                if vm["history"] and vm["history"][-1]["hid"] == hid
                and vm["state"] in (R.ACTIVE, R.POWEROFF, R.SUSPENDED)]

    def host_usage(self, hid: int) -> tuple[int, int]:
        """CPU (x100) and memory (KB) the host's VMs take."""
        cpu = mem = 0
        for vm in self.vms_on(hid):
            vcpu, vmem = R.vm_capacity(vm)
            cpu, mem = cpu + vcpu, mem + vmem
        return cpu, mem

    def _fits(self, vm: dict, host: dict) -> str:
        """Why VM does not fit in HOST's share (HostShare::test), or ''."""
        cpu, mem = R.vm_capacity(vm)
        used_cpu, used_mem = self.host_usage(host["id"])
        total_cpu, total_mem = host["share"]["total_cpu"], host["share"]["total_mem"]
        if used_cpu + cpu > total_cpu or used_mem + mem > total_mem:
            return (f"Not enough capacity. Requested: {cpu} CPU, {mem} KB MEM; "
                    f"Available: {total_cpu - used_cpu} CPU, {total_mem - used_mem} KB MEM")
        return ""

    def vm_allocate(self, text: str, hold: bool) -> int:
        with self.lock:
            tmpl = R.parse(text)
            vm = R.new_vm(tmpl, self.last_oid["vm"] + 1, hold, int(time.time()))
            oid = self._next_id("vm")
            self.pools["vm"][oid] = vm
            self.save()
            log.info("virtual machine %s (%d) allocated, %s", vm["name"], oid, R.vm_state_str(vm))
            return oid

    def _system_ds(self, host: dict, ds_id: int) -> dict:
        """The system datastore a deploy uses: DS_ID, or the cluster's first one."""
        cluster_id = host["cluster_id"]
        if ds_id == -1:
            cluster = self.get("cluster", cluster_id)
            system = [d for d in cluster["datastores"]
                      if d in self.pools["datastore"] and self.pools["datastore"][d]["type"] == R.SYSTEM_DS]
            if not system:
                raise R.OneError(R.ACTION, f"cluster [{cluster_id}] does not have any datastore "
                                           "of type SYSTEM_DS.")
            return self.pools["datastore"][min(system)]
        ds = self.get("datastore", ds_id)
        if ds["type"] != R.SYSTEM_DS:
            raise R.OneError(R.ACTION, f"datastore [{ds_id}] is not a system datastore "
                                       "(onehci stand-in)")
        if cluster_id not in ds["clusters"]:
            raise R.OneError(R.ACTION, f"datastore [{ds_id}] and host [{host['id']}] are not in "
                                       f"the same cluster [{cluster_id}].")
        return ds

    def vm_deploy(self, vid: int, hid: int, enforce: bool, ds_id: int) -> int:
        """VirtualMachineDeploy, checks in oned's order; the VM is RUNNING at once."""
        with self.lock:
            host = self.get("host", hid)
            if host["state"] == R.OFFLINE:
                raise R.OneError(R.ACTION, "Host is offline, cannot use it to deploy VM")
            vm = self.get("vm", vid)
            ds = self._system_ds(host, ds_id)
            if vm["state"] not in (R.PENDING, R.HOLD, R.STOPPED):
                raise R.OneError(R.ACTION, f"Deploy action is not available for state {R.vm_state_str(vm)}")
            if enforce:
                # oned tests capacity only; the stand-in also wants a MONITORED host
                why = (f"Host is {R.HOST_STATE_NAMES.get(host['state'], host['state'])}, not MONITORED "
                       "(onehci stand-in)" if host["state"] != R.MONITORED else self._fits(vm, host))
                if why:
                    raise R.OneError(R.ACTION, f"virtual machine [{vid}] does not fit in host [{hid}]. {why}")
            now = int(time.time())
            vm["history"].append(R.new_history(vm, host, ds["id"], ds["tm_mad"], now))
            self._set_vm_state(vm, R.ACTIVE, R.RUNNING)
            vm["deploy_id"] = f"one-{vid}"
            self.save()
            log.info("virtual machine %s (%d) deployed on host %s (%d), RUNNING", vm["name"], vid,
                     host["name"], hid)
            return vid

    def _set_vm_state(self, vm: dict, state: int, lcm_state: int) -> None:
        vm["prev_state"], vm["prev_lcm_state"] = vm["state"], vm["lcm_state"]
        vm["state"], vm["lcm_state"] = state, lcm_state

    def vm_action(self, action: str, vid: int) -> int:
        with self.lock:
            vm = self.get("vm", vid)
            if action in ("resched", "unresched"):
                if not (vm["state"] == R.POWEROFF or (vm["state"] == R.ACTIVE and vm["lcm_state"]
                                                      in (R.RUNNING, R.LCM_UNKNOWN))):
                    raise R.state_error(action, vm)
                if vm["resched"] != int(action == "resched"):  # a new request: say again if stuck
                    self.unplaceable.discard(vid)
                vm["resched"] = int(action == "resched")
            elif action in ("terminate", "terminate-hard"):
                if vm["state"] == R.DONE:
                    raise R.state_error(action, vm)
                now = int(time.time())
                if vm["history"] and vm["history"][-1]["etime"] == 0:
                    vm["history"][-1]["etime"] = now
                    vm["history"][-1]["action"] = (R.TERMINATE_ACTION if action == "terminate"
                                                   else R.TERMINATE_HARD_ACTION)
                self._set_vm_state(vm, R.DONE, R.LCM_INIT)
                vm["resched"], vm["etime"] = 0, now
            elif action in ("hold", "release"):
                wanted = R.PENDING if action == "hold" else R.HOLD
                if vm["state"] != wanted:
                    raise R.state_error(action, vm)
                self._set_vm_state(vm, R.HOLD if action == "hold" else R.PENDING, R.LCM_INIT)
            elif action in R.VM_ACTIONS:
                raise R.OneError(R.ACTION, f'Action "{action}" is not supported by the onehci stand-in')
            else:
                raise R.OneError(R.ACTION, f'Action "{action}" is not supported')
            self.save()
            log.info("virtual machine %s (%d): %s, now %s%s", vm["name"], vid, action,
                     R.vm_state_str(vm), " (RESCHED)" if vm["resched"] else "")
            return vid

    def reschedule(self) -> list[tuple[int, str, str]]:
        """One scheduler round: every VM with the RESCHED flag goes to the MONITORED host of
        its cluster with the fewest VMs where it fits; the flag stays while none exists.
        Returns the moves (VM id, from, to)."""
        moves = []
        with self.lock:
            for vm in sorted(self.pools["vm"].values(), key=lambda v: v["id"]):
                if not vm["resched"] or vm["state"] != R.ACTIVE or vm["lcm_state"] != R.RUNNING:
                    continue
                current = vm["history"][-1]
                here = self.pools["host"].get(current["hid"])
                cluster_id = here["cluster_id"] if here else current["cid"]
                targets = [h for h in self.pools["host"].values()
                           if h["id"] != current["hid"] and h["state"] == R.MONITORED
                           and h["cluster_id"] == cluster_id and not self._fits(vm, h)]
                if not targets:
                    if vm["id"] not in self.unplaceable:
                        self.unplaceable.add(vm["id"])
                        log.warning("virtual machine %s (%d) cannot be rescheduled: no other MONITORED "
                                    "host with room in cluster %s; it stays on %s with RESCHED set",
                                    vm["name"], vm["id"], self.cluster_name(cluster_id), current["hostname"])
                    continue
                target = min(targets, key=lambda h: (len(self.vms_on(h["id"])), h["id"]))
                now = int(time.time())
                current["etime"], current["action"] = now, R.MIGRATE_ACTION
                vm["history"].append(R.new_history(vm, target, current["ds_id"], current["tm_mad"], now))
                vm["resched"] = 0
                self.unplaceable.discard(vm["id"])
                moves.append((vm["id"], current["hostname"], target["name"]))
                log.info("virtual machine %s (%d) rescheduled: migrated from %s to %s", vm["name"],
                         vm["id"], current["hostname"], target["name"])
            if moves:
                self.save()
        return moves
