"""OpenNebula through pyone: the connection to the frontend's XML-RPC API, the registration
of the site's cloud and the wait for its hosts to be monitored.

Registration makes a cluster named after the site, the site's `kvm` nodes as KVM hosts in
it, a system and an image datastore (TM_MAD shared, DS_MAD fs) on the MooseFS mount and a
bridged virtual network from `networks.vms` (names in `object_names`). It is idempotent:
what exists is read back and compared, never changed; a difference is reported as drift
for the technician to settle, because onehci cannot know whether a hand-made change was
deliberate (a datastore switched to ssh, a host moved to another cluster).

The oneadmin password never leaves this module in a message: pyone puts the session in
the first parameter of every call, so every error text is scrubbed before it is raised.
"""

from __future__ import annotations

import contextlib
import os
import re
import xmlrpc.client
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from xml.parsers.expat import ExpatError

import pyone
import requests
from pyone import server_xrpc

from installer import state, usage
from installer.errors import OnehciError
from installer.i18n import _, ngettext
from installer.waiting import Pending, wait_until

API_PORT = 2633
TIMEOUT = 10.0  # seconds per API call: a frontend that accepts and never answers must not hang onehci

# host states (OpenNebula's HOST_STATES)
INIT, MONITORED, ERROR, DISABLED, OFFLINE = 0, 2, 3, 4, 8
STATE_NAMES = {s.value: s.name for s in pyone.HOST_STATES}
SYSTEM_DS, IMAGE_DS = 1, 0  # a datastore's TYPE in its XML

_secrets: set[str] = set()  # passwords this process connected with: scrubbed from every message
_SESSION = re.compile(r"oneadmin:[^\s'\"<>,\])]+")


def object_names(cluster: str) -> dict[str, str]:
    """The names registration gives OpenNebula's objects, derived from the site's cluster name."""
    return {"cluster": cluster, "system": f"{cluster}-system", "images": f"{cluster}-images",
            "network": f"{cluster}-vms"}


def scrub(text: str, *, sessions: bool = True) -> str:
    """TEXT without the passwords this process used, nor (with SESSIONS) anything shaped like
    pyone's session; OpenNebula's own messages keep their `oneadmin:oneadmin` owners."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _SESSION.sub("oneadmin:***", text) if sessions else text


def api_url(plan) -> str:
    return f"http://{plan.opennebula.frontend_ip}:{API_PORT}/RPC2"


class _Transport(server_xrpc.RequestsTransport):
    """pyone's transport with a timeout: pyone's own `timeout` sets the default of every
    socket of the process, and its requests go out without one."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, host, handler, request_body, verbose=False):
        url = self._build_url(host, handler)
        resp = requests.post(url, data=request_body, headers=self.headers, verify=self.https_verify,
                             timeout=self.timeout)
        if resp.status_code >= 400:
            raise xmlrpc.client.ProtocolError(url, resp.status_code, resp.reason, {})
        return self.parse_response(resp)


def connect(url: str, password: str, *, timeout: float = TIMEOUT):
    """A pyone client for URL as oneadmin, whose calls give up after TIMEOUT seconds."""
    _secrets.add(password)
    client = pyone.OneServer(url, session=f"oneadmin:{password}")
    transport = _Transport(timeout)
    transport.set_https(url.startswith("https"))
    transport.set_https_verify(True)
    client._ServerProxy__transport = transport  # the stdlib ServerProxy's (name-mangled) transport
    return client


@contextlib.contextmanager
def api_errors(url: str = "", password_file: str = "") -> Iterator[None]:
    """Turn what pyone, requests and xmlrpc raise into one OnehciError line, scrubbed."""
    try:
        yield
    except pyone.OneAuthenticationException:
        source = (_("the password in {file}").format(file=password_file) if password_file
                  else _("oneadmin's password"))
        raise OnehciError(_("{api} refused {password}: it is not the one oned took at its first start "
                            "(/var/lib/one/.one/one_auth on the frontend)").format(api=_api(url), password=source)
                          ) from None
    except pyone.OneException as exc:
        raise OnehciError(scrub(_("{api}: {error}").format(api=_api(url), error=exc))) from None
    except requests.exceptions.Timeout:
        raise OnehciError(_("{api} did not answer in time: is the frontend up, and oned running and not stuck?")
                          .format(api=_api(url))) from None
    except (requests.exceptions.ConnectionError, ConnectionError) as exc:
        reason = _("connection refused") if "refused" in str(exc).lower() else _("cannot connect")
        raise OnehciError(_("{api} is unreachable ({reason}): is the opennebula service running on the "
                            "frontend, and was the site deployed?").format(api=_api(url), reason=reason)) from None
    except xmlrpc.client.ProtocolError as exc:
        raise OnehciError(_("{api} answered HTTP {code} {message}: is it really OpenNebula on that port?").format(
            api=_api(url), code=exc.errcode, message=scrub(str(exc.errmsg)))) from None
    except (ExpatError, requests.exceptions.RequestException) as exc:
        raise OnehciError(scrub(_("{api} gave an answer onehci cannot read: {error}").format(api=_api(url), error=exc))
                          ) from None


def _clauses(parts: list[str]) -> str:
    """Clauses of one message, one after the other ("a; b")."""
    text = parts[0] if parts else ""
    for part in parts[1:]:
        text = _("{first}; {then}").format(first=text, then=part)
    return text


def _api(url: str) -> str:
    """OpenNebula's API, as the subject of a message."""
    return _("OpenNebula's API at {url}").format(url=url) if url else _("OpenNebula's API")


def client_for(loaded, plan, *, timeout: float = TIMEOUT, calls_timeout: float | None = None):
    """A pyone client for the site's frontend as oneadmin, checked within TIMEOUT: it answered and took
    the password. Its later calls may take CALLS_TIMEOUT when given (oned slow under load), while a
    frontend that does not answer at all is still said after TIMEOUT."""
    url = api_url(plan)
    password_file = state.oneadmin_password_file(loaded.path)
    if not password_file.exists():  # never make one here: only the deploy that installs oned may
        raise OnehciError(_("no oneadmin password in {file}: deploy the site first (onehci deploy)")
                          .format(file=password_file))
    client = connect(url, state.oneadmin_password(loaded.path), timeout=timeout)
    with api_errors(url, str(password_file)):
        client.user.info(-1)
    if calls_timeout is not None:
        client._ServerProxy__transport.timeout = calls_timeout
    return client


# --- accounting ---------------------------------------------------------------------

ALL_VMS = -2  # one.vmpool.accounting's filter: the VMs of every user


def _number(template: dict, key: str) -> float:
    try:
        return float(template.get(key, 0) or 0)
    except (TypeError, ValueError):
        return 0.0


def accounting(client, start: int, end: int) -> list[usage.Record]:
    """OpenNebula's history records of every VM that ran between START and END (epoch seconds),
    each with the CPU and memory the VM had then (the VM as the record keeps it)."""
    with api_errors():
        answer = client.vmpool.accounting(ALL_VMS, start, end)
    records = []
    for h in getattr(answer, "HISTORY", None) or []:
        template = dict(getattr(h.VM, "TEMPLATE", None) or {}) if h.VM is not None else {}
        # a record closed without its running end (the VM failed on the host) ends with the record
        end = int(h.RETIME) or int(h.ETIME)
        records.append(usage.Record(vm=int(h.OID), seq=int(h.SEQ), host=str(h.HOSTNAME), start=int(h.RSTIME),
                                    end=end, cpu=_number(template, "CPU"),
                                    memory_mib=_number(template, "MEMORY")))
    return records


# --- registration -------------------------------------------------------------------


@dataclass
class Registered:
    """One object registration looked at: made now, or found (with its drift, if any)."""

    kind: str  # cluster | host | datastore | network
    name: str
    id: int
    created: bool
    drift: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return "drift" if self.drift else "created" if self.created else "existing"

    def line(self) -> str:
        kind = {"cluster": _("cluster"), "host": _("host"), "datastore": _("datastore"),
                "network": _("network")}.get(self.kind, self.kind)
        if self.drift:
            text = _("{kind} {name} (id {id}): drift: {drift}; left as it is")
        else:
            text = _("{kind} {name} (id {id}): created") if self.created else _("{kind} {name} (id {id}): existing")
        return text.format(kind=kind, name=self.name, id=self.id, drift=_clauses(self.drift))


@dataclass
class Report:
    objects: list[Registered] = field(default_factory=list)

    def of(self, outcome: str) -> list[Registered]:
        return [o for o in self.objects if o.outcome == outcome]

    def as_dict(self) -> dict:
        return {"created": len(self.of("created")), "existing": len(self.of("existing")),
                "drift": len(self.of("drift")),
                "objects": [{**asdict(o), "outcome": o.outcome} for o in self.objects]}


def _quote(value) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def template(pairs: dict) -> str:
    """OpenNebula template syntax; a dict value is a vector attribute (AR = [ ... ]), a list of
    dicts that vector repeated (two DISKs)."""
    lines = []
    for key, value in pairs.items():
        if isinstance(value, (dict, list)):
            for vector in value if isinstance(value, list) else [value]:
                inner = ", ".join(f"{k} = {_quote(v)}" for k, v in vector.items())
                lines.append(f"{key} = [ {inner} ]")
        else:
            lines.append(f"{key} = {_quote(value)}")
    return "\n".join(lines) + "\n"


def network_template(name: str, vms) -> dict:
    """The bridged network of `networks.vms`: its bridge, one IPv4 range, gateway and DNS if set."""
    pairs = {"NAME": name, "VN_MAD": "bridge", "BRIDGE": vms.bridge,
             "AR": {"TYPE": "IP4", "IP": str(vms.first), "SIZE": str(vms.size)},
             "NETWORK_ADDRESS": str(vms.cidr.network), "NETWORK_MASK": str(vms.cidr.netmask)}
    if vms.gateway:
        pairs["GATEWAY"] = str(vms.gateway)
    if vms.dns:
        pairs["DNS"] = " ".join(str(d) for d in vms.dns)
    return pairs


def _differs(what: str, found, wanted) -> str | None:
    return None if str(found) == str(wanted) else _("{field} is {found}, onehci sets {wanted}").format(
        field=what, found=found or _("(none)"), wanted=wanted)


def _in_cluster(ids, cluster_id: int, cluster: str) -> str | None:
    return None if cluster_id in (ids or []) else _("not in cluster {cluster} ({id})").format(cluster=cluster,
                                                                                               id=cluster_id)


def template_value(obj, key: str) -> str:
    tmpl = obj.TEMPLATE or {}
    return str(tmpl.get(key, "")) if hasattr(tmpl, "get") else ""


def datastore_drift(ds, *, system: bool, mount: str, cluster_id: int, cluster: str) -> list[str]:
    # OpenNebula puts a datastore at DATASTORE_LOCATION/ID whatever the template says (and may
    # write the location with a double slash): compare normalised paths
    wanted_path = os.path.join(os.path.normpath(mount), str(ds.ID))
    found_path = os.path.normpath(ds.BASE_PATH or "")
    checks = [
        _differs("TYPE", "SYSTEM_DS" if ds.TYPE == SYSTEM_DS else "IMAGE_DS" if ds.TYPE == IMAGE_DS else ds.TYPE,
                 "SYSTEM_DS" if system else "IMAGE_DS"),
        _differs("TM_MAD", ds.TM_MAD, "shared"),
        None if system else _differs("DS_MAD", ds.DS_MAD, "fs"),
        None if found_path == wanted_path else
        _("BASE_PATH {found} is not {wanted} on the MooseFS mount (DATASTORE_LOCATION in oned.conf)").format(
            found=ds.BASE_PATH, wanted=wanted_path),
        _in_cluster(ds.CLUSTERS.ID if ds.CLUSTERS else [], cluster_id, cluster),
    ]
    return [c for c in checks if c]


def host_drift(host, *, driver: str, cluster_id: int, cluster: str) -> list[str]:
    checks = [_differs("IM_MAD", host.IM_MAD, driver), _differs("VM_MAD", host.VM_MAD, driver),
              None if host.CLUSTER_ID == cluster_id else
              _("in cluster {found} ({found_id}), not {cluster} ({id})").format(
                  found=host.CLUSTER, found_id=host.CLUSTER_ID, cluster=cluster, id=cluster_id)]
    return [c for c in checks if c]


def network_drift(vnet, wanted: dict, *, cluster_id: int, cluster: str) -> list[str]:
    ar = wanted["AR"]
    ranges = [(r.TYPE, r.IP, str(r.SIZE)) for r in (vnet.AR_POOL.AR if vnet.AR_POOL else [])]
    checks = [_differs("VN_MAD", vnet.VN_MAD, "bridge"), _differs("BRIDGE", vnet.BRIDGE, wanted["BRIDGE"]),
              None if (ar["TYPE"], ar["IP"], ar["SIZE"]) in ranges else
              _("no address range {ip} + {size} (has {ranges})").format(
                  ip=ar["IP"], size=ar["SIZE"], ranges=", ".join(f"{ip} + {n}" for _type, ip, n in ranges) or _("none"))]
    checks += [_differs(key, template_value(vnet, key), wanted[key])
               for key in ("GATEWAY", "DNS", "NETWORK_ADDRESS", "NETWORK_MASK") if key in wanted]
    checks.append(_in_cluster(vnet.CLUSTERS.ID if vnet.CLUSTERS else [], cluster_id, cluster))
    return [c for c in checks if c]


def _by_name(items) -> dict:
    return {item.NAME: item for item in items or []}


def register(loaded, plan, client, say: Callable[[str], None] = print, *,
             hosts: list[str] | None = None) -> Report:
    """Register the site's cloud in OpenNebula; create what is missing, report drift, change
    nothing that exists. HOSTS limits the kvm hosts looked at (deploy --limit)."""
    names = object_names(plan.opennebula.cluster)
    cluster = names["cluster"]
    mount = plan.moosefs.mount
    wanted_hosts = [h for h in plan.opennebula.hosts if hosts is None or h in hosts]
    driver = plan.opennebula.vm_driver  # the monitoring (IM_MAD) of the same name goes with it
    report = Report()

    def note(item: Registered) -> None:
        report.objects.append(item)
        if item.outcome != "existing":
            say(_("OpenNebula: {change}").format(change=item.line()))

    with api_errors():
        found = _by_name(client.clusterpool.info().CLUSTER).get(cluster)
        cluster_id = found.ID if found else client.cluster.allocate(cluster)
        note(Registered("cluster", cluster, cluster_id, created=not found))

        pool = _by_name(client.hostpool.info().HOST)
        for name in wanted_hosts:
            host = pool.get(name)
            if host is None:
                note(Registered("host", name, client.host.allocate(name, driver, driver, cluster_id), created=True))
            else:
                note(Registered("host", name, host.ID, created=False,
                                drift=host_drift(host, driver=driver, cluster_id=cluster_id, cluster=cluster)))

        pool = _by_name(client.datastorepool.info().DATASTORE)
        for key, system in (("system", True), ("images", False)):
            name = names[key]
            ds = pool.get(name)
            created = ds is None
            if created:
                wanted = {"NAME": name, "TYPE": "SYSTEM_DS", "TM_MAD": "shared"} if system else \
                    {"NAME": name, "TYPE": "IMAGE_DS", "DS_MAD": "fs", "TM_MAD": "shared"}
                ds = client.datastore.info(client.datastore.allocate(template(wanted), cluster_id))
            # a new datastore is checked too: a wrong DATASTORE_LOCATION shows at once
            note(Registered("datastore", name, ds.ID, created=created,
                            drift=datastore_drift(ds, system=system, mount=mount, cluster_id=cluster_id,
                                                  cluster=cluster)))

        name = names["network"]
        wanted = network_template(name, loaded.site.networks.vms)
        vnet = _by_name(client.vnpool.info(-2, -1, -1).VNET).get(name)
        if vnet is None:
            note(Registered("network", name, client.vn.allocate(template(wanted), cluster_id), created=True))
        else:
            note(Registered("network", name, vnet.ID, created=False,
                            drift=network_drift(vnet, wanted, cluster_id=cluster_id, cluster=cluster)))
    counts = report.as_dict()
    say(_("OpenNebula: {created} created, {existing} unchanged, {drift} with drift").format(
        created=counts["created"], existing=counts["existing"], drift=counts["drift"]))
    return report


RETRIES = 1  # fresh monitoring rounds asked for a host in ERROR before its error fails the wait
OFFLINE_STATUS, ENABLE_STATUS = 2, 0  # one.host.status values


def monitor_again(client, host) -> None:
    """Ask OpenNebula for a new monitoring round of HOST now, as `onehost forceupdate` does
    (offline, then enabled): a host in ERROR is otherwise retried only minutes later."""
    with api_errors():
        client.host.status(host.ID, OFFLINE_STATUS)
        client.host.status(host.ID, ENABLE_STATUS)


def wait_monitored(client, hosts: list[str], timeout: float = 180.0, say: Callable[[str], None] = print, *,
                   interval: float = 1.0) -> dict[str, str]:
    """Wait until every host in HOSTS is MONITORED; {host: state name} at the end.

    OpenNebula monitors a host when it is added or enabled, and retries a host in ERROR only every
    few minutes (monitord's MONITORING_INTERVAL_HOST). So a host in ERROR — from a round that ran
    before the deploy that mended it, or from a first round that met a passing fault — is asked
    for a new round at once (`onehost forceupdate`), RETRIES times; a round that fails after that
    fails the wait with OpenNebula's message. A host disabled or offline was set so by hand: it is
    not waited for. A host once seen MONITORED during the wait is done: a later failed round is
    for `onehci status` to report, not a reason to fail what came up."""
    if not hosts:
        return {}
    retried: dict[str, int] = {}
    told: dict[str, str] = {}
    say(ngettext("OpenNebula: waiting up to {seconds} s for {count} host(s) to be monitored",
                 "OpenNebula: waiting up to {seconds} s for {count} host(s) to be monitored", len(hosts))
        .format(seconds=f"{timeout:.0f}", count=len(hosts)))
    last: dict = {}  # the latest host pool and hosts still awaited, for the message at the timeout

    def all_monitored():
        with api_errors():
            pool = last["pool"] = _by_name(client.hostpool.info().HOST)
        failed, pending = [], []
        for name in (n for n in hosts if n not in told):
            host = pool.get(name)
            verdict = host_verdict(host, retried.get(name, 0))
            if verdict == "missing":
                failed.append(_("host {name} is not registered in OpenNebula").format(name=name))
            elif verdict == "done":
                told[name] = STATE_NAMES[host.STATE]
                say((_("OpenNebula: host {name} monitored") if host.STATE == MONITORED else
                     _("OpenNebula: host {name} is {state} (set by hand): not waited for"))
                    .format(name=name, state=told[name]))
            elif verdict == "retry":
                retried[name] = retried.get(name, 0) + 1
                say(_("OpenNebula: host {name} is in ERROR ({error}): asking for a new monitoring round")
                    .format(name=name, error=error_line(host)))
                monitor_again(client, host)
                pending.append(name)
            elif verdict == "failed":
                failed.append(_("host {name} is in ERROR: {error} (OpenNebula's monitoring log: "
                                "/var/log/one/monitor.log on the frontend)").format(name=name, error=error_line(host)))
            else:
                pending.append(name)
        if failed:
            raise OnehciError(scrub(_clauses(failed), sessions=False))
        last["pending"] = pending
        return {name: told[name] for name in hosts} if not pending else Pending(", ".join(pending))

    def not_monitored(_pending: str) -> str:
        pool = last["pool"]
        return scrub(_clauses([
            _("host {name} is not monitored after {seconds} s (state {state})").format(
                name=name, seconds=f"{timeout:.0f}", state=STATE_NAMES.get(pool[name].STATE, pool[name].STATE))
            for name in last["pending"]]), sessions=False)

    return wait_until(all_monitored, timeout=timeout, every=interval, timed_out=not_monitored)


def host_verdict(host, retries: int) -> str:
    """What the wait makes of a host it has not seen come up yet, given the new monitoring rounds
    it already asked for: missing | done (monitored, or disabled/offline by hand) | retry (in
    ERROR, a new round can still be asked for) | failed | wait."""
    if host is None:
        return "missing"
    if host.STATE in (MONITORED, DISABLED, OFFLINE):
        return "done"
    if host.STATE == ERROR:
        return "retry" if retries < RETRIES else "failed"
    return "wait"


def error_line(host) -> str:
    """OpenNebula's message for a host in ERROR, on one line."""
    text = " ".join(template_value(host, "ERROR").split())
    return text or _("OpenNebula gave no reason")


# The role variable for how long a host's monitoring probes may run (monitord.conf's `-w`), and
# OpenNebula's own figure, which the opennebula_frontend role keeps unless the environment sets it
PROBE_TIMEOUT_VAR = "opennebula_frontend__monitor_timeout"
PROBE_TIMEOUT = 90


def monitoring_wait(probe_timeout: float = PROBE_TIMEOUT) -> float:
    """How long deploy waits for its hosts to be monitored: a first round may take the probes'
    whole limit, after up to 90 s for monitord to start it (it copies its probes to the host)."""
    return max(180.0, float(probe_timeout) + 90.0)


def register_cloud(loaded, plan, *, hosts: list[str] | None = None, timeout: float = 180.0,
                   say: Callable[[str], None] = print) -> Report:
    """What deploy does once the playbook succeeded: connect, register, wait for the hosts."""
    client = client_for(loaded, plan)
    report = register(loaded, plan, client, say, hosts=hosts)
    wait_monitored(client, [o.name for o in report.objects if o.kind == "host"], timeout, say)
    return report
