"""`onehci status`: the cloud's health as one line per component, green, amber or red, with
the reason; and the verdict as an exit code.

The rule (docs/opennebula.md): the cloud is DOWN (exit 2) when the MooseFS master does not
answer, no chunkserver is connected, OpenNebula's API does not answer (or refuses the
password), or no KVM host is monitored: no VM can run then. Any other red or amber line
makes it DEGRADED (exit 1); all green is HEALTHY (exit 0).

The facts are gathered concurrently (mfscli, pyone, one SSH per host) with short timeouts,
then judged by pure functions that the tests feed canned facts.
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import pyone

from installer import environment, mfs, one, remote
from installer.errors import OnehciError
from installer.i18n import _, ngettext

GREEN, AMBER, RED = "green", "amber", "red"
HEALTHY, DEGRADED, DOWN = 0, 1, 2
VERDICTS = {HEALTHY: "healthy", DEGRADED: "degraded", DOWN: "down"}  # --json and the day-2 records: never translated
AMBER_FREE, RED_FREE = 15.0, 5.0  # percent of free space under which a line turns amber, red
TIMEOUT = 4.0  # seconds for each check: status must answer within a few seconds


@dataclass(frozen=True)
class Check:
    component: str
    colour: str
    reason: str
    fatal: bool = False  # red here means the cloud is down


@dataclass
class Status:
    checks: list[Check]
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        if any(c.fatal and c.colour == RED for c in self.checks):
            return DOWN
        return DEGRADED if any(c.colour != GREEN for c in self.checks) else HEALTHY

    @property
    def verdict(self) -> str:
        return VERDICTS[self.exit_code]

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "exit_code": self.exit_code, "seconds": round(self.seconds, 2),
                "checks": [{k: v for k, v in asdict(c).items() if k != "fatal"} for c in self.checks]}


def verdict_text(exit_code: int) -> str:
    """The verdict as the technician reads it (VERDICTS, translated)."""
    return {HEALTHY: _("healthy"), DEGRADED: _("degraded"), DOWN: _("down")}[exit_code]


def colour_text(colour: str) -> str:
    """A line's colour as the technician reads it (--json keeps green, amber, red)."""
    return {GREEN: _("green"), AMBER: _("amber"), RED: _("red")}[colour]


# Component names (moosefs master, host NAME...) are identifiers: the day-2 operations and
# --json read them, so they are never translated; the reasons are.

# free space: amber or red there is nothing a day-2 operation changes, so none waits on it
SPACE_LINES = ("moosefs space", "datastore ")


def not_green(result: Status, *, space: bool = False) -> list[Check]:
    """The lines of RESULT that are not green; the free-space lines only with SPACE."""
    return [c for c in result.checks if c.colour != GREEN and (space or not c.component.startswith(SPACE_LINES))]


@dataclass
class OneView:
    """What status reads from OpenNebula; `error` set when the API could not be used."""

    url: str
    error: str = ""
    version: str = ""
    hosts: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (state, ERROR text)
    datastores: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (total MB, free MB)
    vms: list[tuple[int, str, str, str]] = field(default_factory=list)  # (id, host, "running"|"failed"|other, error)


@dataclass(frozen=True)
class Mount:
    ok: bool
    detail: str  # the mount's source when ok, else why not
    libvirt: str = ""  # on a KVM host: libvirtd's state as systemd says it ("active", ...); "" not checked


# --- judging ------------------------------------------------------------------------


def _named(names: list[str], ips: dict[str, str]) -> str:
    return ", ".join(f"{n} ({ips[n]})" for n in names)


def _clauses(*parts: str) -> str:
    """Clauses of one reason, one after the other ("a; b")."""
    text = parts[0]
    for part in parts[1:]:
        text = _("{first}; {then}").format(first=text, then=part)
    return text


def _connected(here: int, wanted: int) -> str:
    # English reads the same for one and several; French agrees with the number connected
    return ngettext("{count} of {total} connected", "{count} of {total} connected", here).format(
        count=here, total=wanted)


def _space(component: str, total_mb: float, free_mb: float) -> Check:
    if total_mb <= 0:
        return Check(component, AMBER, _("no size reported yet"))
    percent = 100.0 * free_mb / total_mb
    text = _("{free} GiB free of {total} GiB ({percent}%)").format(
        free=f"{free_mb / 1024:.1f}", total=f"{total_mb / 1024:.1f}", percent=f"{percent:.0f}")
    colour = RED if percent < RED_FREE else AMBER if percent < AMBER_FREE else GREEN
    return Check(component, colour, text if colour == GREEN else
                 _("{space}: add chunk disks or free space").format(space=text))


def moosefs_checks(health: mfs.Health, plan) -> list[Check]:
    if not health.reachable:
        return [Check("moosefs master", RED, health.error or _("{master} does not answer").format(master=health.master),
                      fatal=True)]
    ips = {n.hostname: n.ip for n in plan.nodes}
    checks = [Check("moosefs master", GREEN, _("MooseFS {version} at {master}").format(
        version=health.version, master=health.master))]

    wanted = plan.moosefs.metaloggers
    missing = [n for n in wanted if ips[n] not in health.metaloggers]
    here = len(wanted) - len(missing)
    if not wanted:
        checks.append(Check("moosefs metaloggers", GREEN, _("none in the site ({count} connected)").format(
            count=len(health.metaloggers))))
    elif not missing:
        checks.append(Check("moosefs metaloggers", GREEN, _connected(here, len(wanted))))
    elif here:
        checks.append(Check("moosefs metaloggers", AMBER, _("{connected}; missing {nodes}").format(
            connected=_connected(here, len(wanted)), nodes=_named(missing, ips))))
    else:
        checks.append(Check("moosefs metaloggers", RED, _(
            "{connected}; missing {nodes}: no copy of the metadata outside the master").format(
                connected=_connected(here, len(wanted)), nodes=_named(missing, ips))))

    wanted = plan.moosefs.chunkservers
    connected = {c.ip: c for c in health.chunkservers}
    missing = [n for n in wanted if ips[n] not in connected]
    maintenance = [n for n in wanted if ips[n] in connected and connected[ips[n]].maintenance]
    here = len(wanted) - len(missing)
    text = _connected(here, len(wanted))
    if not connected:
        checks.append(Check("moosefs chunkservers", RED, _("{connected}: no data can be read or written").format(
            connected=text), fatal=True))
    else:
        notes = ([_("missing {nodes}").format(nodes=_named(missing, ips))] if missing else []) + \
            ([_("in maintenance {nodes}").format(nodes=", ".join(maintenance))] if maintenance else [])
        checks.append(Check("moosefs chunkservers", AMBER if notes else GREEN, _clauses(text, *notes)))

    counts = health.chunks
    lost, endangered, undergoal = (counts.get(k, 0) for k in ("missing", "endangered", "undergoal"))
    low = endangered + undergoal  # both have fewer copies than their goal
    if lost:
        # English reads the same for one and several; French agrees with the number
        text = ngettext("{lost} missing: no copy left, their files cannot be read until a chunkserver holding them "
                        "comes back",
                        "{lost} missing: no copy left, their files cannot be read until a chunkserver holding them "
                        "comes back", lost).format(lost=lost)
        checks.append(Check("moosefs chunks", RED, _clauses(text, _("{low} undergoal").format(low=low)) if low
                            else text))
    elif low:
        checks.append(Check("moosefs chunks", AMBER, _(
            "{low} undergoal ({endangered} endangered: one copy left); MooseFS is replicating").format(
                low=low, endangered=endangered)))
    else:
        total = sum(counts.values())
        checks.append(Check("moosefs chunks", GREEN,
                            ngettext("all {total} at their goal", "all {total} at their goal", total).format(
                                total=total) if total else _("no chunks yet")))
    mb = 1024 * 1024
    checks.append(_space("moosefs space", health.total_space / mb, health.avail_space / mb))
    return checks


def opennebula_checks(view: OneView, plan) -> list[Check]:
    if view.error:
        return [Check("opennebula api", RED, view.error, fatal=True)]
    checks = [Check("opennebula api", GREEN, _("OpenNebula {version} at {url}").format(version=view.version,
                                                                                      url=view.url))]
    wanted = plan.opennebula.hosts
    monitored = [h for h in wanted if view.hosts.get(h, (None,))[0] == one.MONITORED]
    # English reads the same for one and several; French agrees with the number monitored
    count = ngettext("{count} of {total} monitored", "{count} of {total} monitored", len(monitored)).format(
        count=len(monitored), total=len(wanted))
    if len(monitored) == len(wanted):
        checks.append(Check("opennebula hosts", GREEN, count))
    elif monitored:
        checks.append(Check("opennebula hosts", AMBER, count))
    else:
        checks.append(Check("opennebula hosts", RED, _("0 of {total} monitored: no VM can run").format(
            total=len(wanted)), fatal=True))
    for name in wanted:
        check = host_check(name, view.hosts.get(name))
        running = sum(1 for vm in view.vms if vm[1] == name and vm[2] == "running")
        checks.append(dataclasses.replace(check, reason=_("{reason}, {running} VM(s) running").format(
            reason=check.reason, running=running)) if check.colour == GREEN else check)
    checks.append(vm_check(view.vms))
    for name in (one.object_names(plan.opennebula.cluster)[k] for k in ("system", "images")):
        component = f"datastore {name}"
        if name not in view.datastores:
            checks.append(Check(component, RED, _("not registered in OpenNebula: run onehci deploy")))
        else:
            checks.append(_space(component, *view.datastores[name]))
    return checks


def vm_check(vms: list[tuple[int, str, str, str]]) -> Check:
    """Amber when a VM has failed (the cloud still runs the others), naming it, its host and why."""
    failed = [_("VM {vm} on {host}: {reason}").format(vm=vm, host=host or _("no host"),
                                                      reason=error or _("no reason given"))
              for vm, host, state, error in vms if state == "failed"]
    running = sum(1 for vm in vms if vm[2] == "running")
    if failed:
        shown = _clauses(*failed[:3], *(["..."] if len(failed) > 3 else []))
        return Check("opennebula vms", AMBER, _("{failed} failed ({vms}), {running} running").format(
            failed=len(failed), vms=shown, running=running))
    return Check("opennebula vms", GREEN, _("{running} running, none failed").format(running=running))


def vm_row(vm) -> tuple[int, str, str, str]:
    """(id, its host, running | failed | its state's name, OpenNebula's error) of a VM of the pool."""
    history = getattr(getattr(vm, "HISTORY_RECORDS", None), "HISTORY", None) or []
    last = history[-1] if isinstance(history, list) and history else history
    host = getattr(last, "HOSTNAME", "") if last else ""
    lcm = pyone.LCM_STATE(vm.LCM_STATE).name if vm.STATE == pyone.VM_STATE.ACTIVE else ""
    if vm.STATE == pyone.VM_STATE.FAILED or "FAILURE" in lcm:
        user = vm.USER_TEMPLATE or {}
        return vm.ID, host, "failed", (str(user.get("ERROR", "")) if hasattr(user, "get") else "") or lcm
    if lcm == "RUNNING":
        return vm.ID, host, "running", ""
    return vm.ID, host, lcm or pyone.VM_STATE(vm.STATE).name, ""


def host_check(name: str, found: tuple[int, str] | None) -> Check:
    component = f"host {name}"
    if found is None:
        return Check(component, RED, _("not registered in OpenNebula: run onehci deploy"))
    state, error = found
    if state == one.MONITORED:
        return Check(component, GREEN, _("monitored"))
    if state == one.ERROR:  # ERROR: OpenNebula's name of the state, as its tools show it
        return Check(component, RED, _("ERROR: {reason}").format(reason=error or _("OpenNebula gave no reason")))
    if state == one.DISABLED:
        return Check(component, AMBER, _("disabled (by hand): monitored, but gets no new VM"))
    if state == one.OFFLINE:
        return Check(component, AMBER, _("offline (by hand): not monitored, gets no VM"))
    return Check(component, AMBER, _("not monitored yet ({state})").format(state=one.STATE_NAMES.get(state, state)))


def mount_checks(mounts: dict[str, Mount], mount: str) -> list[Check]:
    checks = [Check(f"mount {name}", GREEN if m.ok else RED,
                    _("{mount} mounted from {source}").format(mount=mount, source=m.detail) if m.ok else m.detail)
              for name, m in mounts.items()]
    # OpenNebula notices a stopped libvirtd only when a VM is started there or at its next system
    # probe, minutes later: status asks systemd on every KVM host itself
    checks += [Check(f"libvirt {name}", GREEN if m.libvirt == "active" else RED,
                     _("libvirtd running") if m.libvirt == "active" else
                     _("libvirtd is not running ({state}): no VM can start or be monitored there").format(
                         state=m.libvirt))
               for name, m in mounts.items() if m.libvirt]
    return checks


def judge(plan, health: mfs.Health, view: OneView, mounts: dict[str, Mount], seconds: float = 0.0) -> Status:
    return Status(moosefs_checks(health, plan) + opennebula_checks(view, plan)
                  + mount_checks(mounts, plan.moosefs.mount), seconds)


# --- gathering ----------------------------------------------------------------------


def read_one(client, url: str) -> OneView:
    """Version, hosts and datastores from a connected client; errors end up in `error`."""
    view = OneView(url)
    try:
        with one.api_errors(url):
            view.version = client.system.version()
            view.hosts = {h.NAME: (h.STATE, one.template_value(h, "ERROR")) for h in client.hostpool.info().HOST}
            view.datastores = {d.NAME: (d.TOTAL_MB or 0, d.FREE_MB or 0)
                               for d in client.datastorepool.info().DATASTORE}
            view.vms = [vm_row(vm) for vm in client.vmpool.info(-2, -1, -1, -1).VM]  # every VM not DONE
    except OnehciError as exc:
        view.error = str(exc)
    return view


def one_view(loaded, plan, timeout: float = TIMEOUT) -> OneView:
    url = one.api_url(plan)
    try:
        client = one.client_for(loaded, plan, timeout=timeout)
    except OnehciError as exc:
        return OneView(url, error=one.scrub(str(exc)))
    return read_one(client, url)


LIBVIRT_MARK = "libvirtd:"


def check_mount(argv: list[str], mount: str, timeout: float = TIMEOUT, *, libvirt: bool = False) -> Mount:
    """What is mounted at MOUNT, through ARGV (ssh ... root@HOST), and with LIBVIRT whether
    libvirtd runs there (systemd's word, read-only: virsh would start it through its socket).
    MooseFS 3.0 under FUSE 3 shows as type `fuse` with source `mfs#MASTER:PORT` (older clients:
    `fuse.mfs`)."""
    script = f"findmnt -n -o FSTYPE,SOURCE --mountpoint {shlex.quote(mount)}; found=$?"
    if libvirt:
        script += f"; echo {LIBVIRT_MARK}$(systemctl is-active libvirtd)"
    try:
        done = subprocess.run([*argv, f"{script}; exit $found"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Mount(False, _("cannot check: no answer over SSH within {seconds} s").format(seconds=f"{timeout:g}"))
    if done.returncode in (0, 1):  # 1: findmnt found nothing
        lines = done.stdout.splitlines()
        state = next((ln.removeprefix(LIBVIRT_MARK) for ln in lines if ln.startswith(LIBVIRT_MARK)), "")
        fields = next((ln for ln in lines if not ln.startswith(LIBVIRT_MARK)), "").split()
        if len(fields) >= 2 and fields[0] in ("fuse", "fuse.mfs") and fields[1].startswith("mfs"):
            return Mount(True, fields[1], state)
        if fields:
            return Mount(False, _("{mount} holds a {type} filesystem, not MooseFS").format(mount=mount, type=fields[0]),
                         state)
        return Mount(False, _("MooseFS is not mounted at {mount}").format(mount=mount), state)
    last = (done.stderr.strip().splitlines() or [_("exit {code}").format(code=done.returncode)])[-1]
    return Mount(False, _("cannot check over SSH: {reason}").format(reason=last))


def gather(loaded, plan, *, timeout: float = TIMEOUT) -> Status:
    """Every check at once: MooseFS, OpenNebula and one SSH per MooseFS client host (read-only:
    a host key never seen is refused, deploy is where keys are learned)."""
    started = time.monotonic()
    ssh_key, known_hosts = environment.ssh_identity(loaded.path)
    clients = [plan.node(name) for name in plan.moosefs.clients]
    with ThreadPoolExecutor(max_workers=2 + len(clients)) as pool:
        health = pool.submit(mfs.health, plan.moosefs.master_ip, timeout)
        view = pool.submit(one_view, loaded, plan, timeout)
        mounts = {n.hostname: pool.submit(check_mount, remote.ssh_argv(n.ip, ssh_key, str(known_hosts), timeout),
                                          plan.moosefs.mount, timeout + 1,
                                          libvirt=n.hostname in plan.opennebula.hosts) for n in clients}
        return judge(plan, health.result(), view.result(), {n: f.result() for n, f in mounts.items()},
                     time.monotonic() - started)
