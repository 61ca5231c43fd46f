"""`onehci upgrade SITE`: a rolling package upgrade, one node at a time (docs/operations/upgrade.md).

Before anything, and again at every resumption, the cloud must be healthy: MooseFS with every
chunk at its goal and every server connected, OpenNebula answering with every host monitored,
the MooseFS mount on every host (the blocking lines of `onehci status`; only free space is
not blocking). Then, node after node (the MooseFS master and the OpenNebula frontend last,
so that they are upgraded once the others are known to come back):

1. `apt-get update` and a simulated `apt-get upgrade`: what would change;
2. when something would: the OpenNebula host (kvm nodes) is disabled and its VMs moved away,
   then `apt-get upgrade` runs without questions, keeping changed configuration files
   (--force-confdef --force-confold), and the services of the upgraded packages that were
   running are restarted (`systemctl try-restart` of the units the packages ship; needrestart
   as well when the node has it, for services using upgraded libraries);
3. the node must come back healthy: its MooseFS services active, no chunk missing,
   endangered or undergoal, the host enabled again and monitored by a monitoring round that
   ran after the upgrade (not the state it had before), `status` green.

Each node is one journal step (kind "upgrade", target the cluster): interrupted, the same
command continues at the node it stopped at. A node that does not come back healthy stops the
upgrade there and the nodes after it are not touched. Every step is safe to run again: a
node with nothing left to upgrade only has its health checked (and its host enabled).
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from installer import journal, mfs, one, remote, status
from installer.errors import OnehciError
from installer.i18n import _, ngettext
from installer import waiting
from installer.operations import hosts, storage

KIND = "upgrade"
TIMEOUT = 600.0  # seconds for each wait after a node's upgrade (chunks, host monitored, status)
APT_TIMEOUT = 1800.0  # seconds for apt on one node
# the units the roles run for each role: they must be active after a node's upgrade
ROLE_UNITS = {"mfs_master": "moosefs-master", "mfs_chunkserver": "moosefs-chunkserver",
              "mfs_metalogger": "moosefs-metalogger"}
# the units whose restart leaves the master's chunk matrix stale until a chunk loop that starts
# after their return (a metalogger holds no chunk)
CHUNK_UNITS = ("moosefs-master", "moosefs-chunkserver")
_ENV = "export LANG=C LC_ALL=C DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1; "
_INST = re.compile(r"^Inst (\S+)(?: \[([^\]]*)\])? \((\S+)(?: (.*?))?(?: \[[^\]]*\])?\)")
Say = Callable[[str], None]


@dataclass(frozen=True)
class Pending:
    """One package a simulated `apt-get upgrade` would change."""

    package: str
    installed: str  # "" for a package the upgrade would newly install
    candidate: str
    origin: str = ""

    def line(self) -> str:
        installed = self.installed or _("(new)")
        return f"{self.package} {installed} -> {self.candidate}"


@dataclass
class Simulation:
    packages: list[Pending] = field(default_factory=list)
    kept_back: list[str] = field(default_factory=list)  # need new packages or removals: `apt-get upgrade` leaves them

    def as_dict(self) -> dict:
        return {"packages": [asdict(p) for p in self.packages], "kept_back": self.kept_back}


# --- pure parts -------------------------------------------------------------------------


def order(plan) -> list[str]:
    """The nodes in the order they are upgraded: the plain ones (by name), then the MooseFS
    master, then the OpenNebula frontend (one node once when it holds both)."""
    last = [plan.moosefs.master, plan.opennebula.frontend]
    first = sorted(n.hostname for n in plan.nodes if n.hostname not in last)
    return first + list(dict.fromkeys(last))


def step_name(node: str) -> str:
    return f"upgrade {node}"


def parse_simulation(text: str) -> Simulation:
    """What `LANG=C apt-get -s upgrade` prints -> the packages it would change (its `Inst`
    lines) and those it keeps back."""
    sim = Simulation()
    in_kept = False
    for line in text.splitlines():
        if line.startswith("The following packages have been kept back"):
            in_kept = True
            continue
        if in_kept:
            if line.startswith(" "):
                sim.kept_back += line.split()
                continue
            in_kept = False
        found = _INST.match(line)
        if found:
            name, installed, candidate, origin = found.groups()
            sim.packages.append(Pending(name, installed or "", candidate, (origin or "").strip()))
    return sim


def blocking(result: status.Status, allow_host: str | None = None) -> list[status.Check]:
    """The lines of a status that stop an upgrade: any not green, except free space, and
    (ALLOW_HOST, the node an interrupted upgrade stopped at) that node's host and the count of
    monitored hosts, which the upgrade itself set right again."""
    allowed = {f"host {allow_host}", "opennebula hosts"} if allow_host else set()
    return [c for c in status.not_green(result) if c.component not in allowed]  # free space: not the upgrade's


def _lines(checks: list[status.Check]) -> str:
    return "; ".join(f"{c.component}: {c.reason}" for c in checks)


def unit_script(packages: list[str]) -> str:
    """sh: restart the running services shipped by PACKAGES; prints `restarted UNIT` lines."""
    names = " ".join(shlex.quote(p) for p in packages)
    return (f"for p in {names}; do dpkg -L \"$p\" 2>/dev/null; done"
            r" | sed -n 's#^/\(usr/\)\{0,1\}lib/systemd/system/\([^/@]*\.service\)$#\2#p' | sort -u"
            " | while read -r unit; do if systemctl is-active --quiet \"$unit\"; then "
            "systemctl try-restart \"$unit\" && echo \"restarted $unit\"; fi; done; "
            "if command -v needrestart >/dev/null 2>&1; then "
            "needrestart -r a -b 2>/dev/null | sed -n 's/^NEEDRESTART-SVC: *\\(.*\\)/restarted \\1 (needrestart)/p'; fi")


# --- on a node ----------------------------------------------------------------------------


def simulate(loaded, node, *, timeout: float = 300) -> Simulation:
    """`apt-get update` (the package lists only) and a simulated upgrade on NODE."""
    out = remote.check(loaded, node.ip, _ENV + "apt-get -q update >/dev/null && apt-get -s upgrade",
                       _("apt-get update and a simulated upgrade of {node}").format(node=node.hostname), timeout=timeout)
    return parse_simulation(out)


def _apply(loaded, node, sim: Simulation, say: Say) -> list[str]:
    """apt-get upgrade on NODE and the restart of what it upgraded; the units restarted."""
    say(ngettext("{node}: apt-get upgrade ({count} package(s))", "{node}: apt-get upgrade ({count} package(s))",
                 len(sim.packages)).format(node=node.hostname, count=len(sim.packages)))
    remote.check(loaded, node.ip,
                 _ENV + "apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold upgrade",
                 _("apt-get upgrade of {node}").format(node=node.hostname), timeout=APT_TIMEOUT)
    out = remote.check(loaded, node.ip, unit_script([p.package for p in sim.packages]),
                       _("restarting the upgraded services of {node}").format(node=node.hostname), timeout=300)
    restarted = [line.removeprefix("restarted ") for line in out.splitlines() if line.startswith("restarted ")]
    say(_("{node}: restarted {units}").format(node=node.hostname, units=", ".join(restarted)) if restarted
        else _("{node}: no running service to restart").format(node=node.hostname))
    return restarted


def chunk_units(node) -> list[str]:
    """NODE's MooseFS units that hold or count chunks (a metalogger holds none)."""
    return [ROLE_UNITS[r] for r in node.roles if ROLE_UNITS.get(r) in CHUNK_UNITS]


def invocations(loaded, node) -> dict[str, str] | None:
    """systemd's InvocationID of NODE's chunk_units (new at every start of a unit, empty for a
    stopped one); None when the node does not say."""
    units = chunk_units(node)
    if not units:
        return {}
    # one "UNIT ID" line per unit (`systemctl show` of several units puts blank lines between them)
    done = remote.run(loaded, node.ip, f"for u in {' '.join(units)}; do "
                      'echo "$u $(systemctl show -p InvocationID --value "$u")"; done', timeout=30)
    found = {unit: ident for unit, _, ident in (line.partition(" ") for line in done.stdout.splitlines())}
    return found if done.returncode == 0 and sorted(found) == sorted(units) else None


def chunk_loop_reason(node, *, upgraded: bool, resumed: bool, before: dict[str, str] | None,
                      after: dict[str, str] | None) -> str | None:
    """Why NODE's upgrade must wait for a chunk loop started after it, in words; None when the
    master's chunk matrix is still true. BEFORE and AFTER: invocations() around this attempt's
    apt-get upgrade and restarts (its package, needrestart, a postinst: any start is a new ID)."""
    if not chunk_units(node):
        return None
    if resumed:  # what an interrupted attempt restarted is not known: its IDs were not kept
        return _("an earlier attempt at this node may have restarted MooseFS")
    if not upgraded:
        return None
    if before is None or after is None:
        return _("systemd did not say whether MooseFS started again")
    if before != after or not all(after.values()):
        return _("MooseFS started again during the upgrade")
    return None


def _wait_units(loaded, node, timeout: float) -> None:
    units = [ROLE_UNITS[r] for r in node.roles if r in ROLE_UNITS]
    if not units:
        return
    last: dict = {}  # the units down, or SSH's error, at the last look: for the message at the timeout

    def running():
        done = remote.run(loaded, node.ip, "for u in " + " ".join(units) +
                          "; do systemctl is-active --quiet $u || echo $u; done", timeout=30)
        down = done.stdout.split() if done.returncode == 0 else None
        if down == []:
            return True
        last.clear()
        if down:
            last["down"] = ", ".join(down)
        else:
            last["ssh"] = (done.stderr.strip().splitlines() or ["?"])[-1]
        return waiting.Pending(last.get("down") or last["ssh"])

    def timed_out(_pending: str) -> str:
        if "down" in last:
            return _("{node} {units} not running after its upgrade (see `journalctl -u UNIT` there)").format(
                node=node.hostname, units=last["down"])
        return _("{node} does not answer over SSH ({error}) after its upgrade (see `journalctl -u UNIT` there)").format(
            node=node.hostname, error=last["ssh"])

    waiting.wait_until(running, timeout=min(timeout, 60), every=2, timed_out=timed_out)


def _client(loaded, plan, timeout: float, say: Say):
    """A client for the frontend, waiting for its API (the frontend's own upgrade restarts it)."""
    def client():
        try:
            return one.client_for(loaded, plan)
        except OnehciError as exc:
            return waiting.Pending(str(exc))

    told = []  # said once: the error's text may change from try to try

    def once(text: str) -> None:
        if not told:
            say(_("OpenNebula: waiting for the API: {error}").format(error=text))
            told.append(text)

    return waiting.wait_until(client, timeout=timeout, every=2, say=once, timed_out=lambda exc: (
        _("OpenNebula's API does not answer after {seconds} s: {error}").format(seconds=f"{timeout:.0f}", error=exc)))


def _monitor_again(loaded, plan, names: list[str]) -> None:
    """A new monitoring round now for the hosts among NAMES that are in ERROR (`onehost
    forceupdate`): OpenNebula retries them by itself only minutes later."""
    client = one.client_for(loaded, plan)
    with one.api_errors():
        pool = {h.NAME: h for h in client.hostpool.info().HOST or []}
    for name in names:
        if name in pool and pool[name].STATE == one.ERROR:
            one.monitor_again(client, pool[name])


def _wait_status(loaded, plan, timeout: float, say: Say) -> status.Status:
    def green():
        result = status.gather(loaded, plan)
        left = blocking(result)
        return result if not left else waiting.Pending(_lines(left))

    return waiting.wait_until(green, timeout=timeout, every=3,
                              say=lambda text: say(_("status: waiting for {checks}").format(checks=text)),
                              timed_out=lambda text: _("status is not green after {seconds} s: {checks}").format(
                                  seconds=f"{timeout:.0f}", checks=text))


def upgrade_node(loaded, plan, name: str, *, timeout: float = TIMEOUT, resumed: bool = False,
                 say: Say = print) -> dict:
    """One node: disable and empty its host, upgrade, restart, and wait for it to be healthy
    again (raises OnehciError naming what is not). RESUMED: an earlier attempt at this node did
    not finish. The journal records the returned dict."""
    started = time.monotonic()
    node = plan.node(name)
    kvm = name in plan.opennebula.hosts
    sim = simulate(loaded, node)
    record: dict = {"node": name, "packages": [asdict(p) for p in sim.packages], "kept_back": sim.kept_back,
                    "moved_vms": [], "restarted": []}
    before: dict[str, str] | None = {}  # invocations() before apt, when it runs
    if sim.packages:
        say(ngettext("{node}: {count} package(s) to upgrade: {packages}",
                     "{node}: {count} package(s) to upgrade: {packages}", len(sim.packages)).format(
            node=name, count=len(sim.packages), packages=", ".join(p.line() for p in sim.packages)))
        if kvm:
            client = _client(loaded, plan, timeout, say)
            say(_("OpenNebula: host {name} {state}").format(
                name=name, state=hosts.set_state(client, name, hosts.DISABLE).lower()))
            record["moved_vms"] = hosts.flush(client, name, timeout=timeout, say=say)
        before = invocations(loaded, node)
        record["restarted"] = _apply(loaded, node, sim, say)
    else:
        kept = len(sim.kept_back)
        say((ngettext("{node}: nothing to upgrade ({count} kept back); checking it is healthy",
                      "{node}: nothing to upgrade ({count} kept back); checking it is healthy", kept) if kept
             else _("{node}: nothing to upgrade; checking it is healthy")).format(node=name, count=kept))
    _wait_units(loaded, node, timeout)
    master = plan.moosefs.master_ip
    # a restarted chunkserver (or master) was away: only a chunk loop started after its return shows
    # the copies. One that kept running left the matrix true: no loop to wait for (300 s by default)
    reason = chunk_loop_reason(node, upgraded=bool(sim.packages), resumed=resumed, before=before,
                               after=invocations(loaded, node) if sim.packages else {})
    record["chunk_loop_awaited"] = reason is not None
    if reason:
        say(_("{node}: {reason}: waiting for a chunk loop that starts now").format(node=name, reason=reason))
    elif sim.packages and chunk_units(node):
        say(_("{node}: MooseFS kept running through the upgrade; no chunk loop to wait for").format(node=name))
    since = mfs.master_time(master) if reason else None
    storage.wait_safe(master, timeout=timeout, say=say, since=since,
                      what=_("every chunk to have its copies after {node}'s upgrade").format(node=name))
    if kvm:
        client = _client(loaded, plan, timeout, say)
        if sim.packages:
            # the state it had before says nothing of the upgraded host (its probes may be new too):
            # a new monitoring round now, as `onehost forceupdate`, leaves it in INIT until that round ends
            say(_("OpenNebula: host {name} enabled; waiting for a monitoring round that runs after its upgrade")
                .format(name=name))
            one.monitor_again(client, hosts.find_host(client, name))
        else:
            hosts.set_state(client, name, hosts.ENABLE)
        try:
            hosts.wait_monitored(client, name, timeout=timeout, say=say)  # ERROR: failed unless it recovers
        except OnehciError as exc:
            # OpenNebula's message for a host in ERROR is often empty: status says what is wrong there
            here = [c for c in status.gather(loaded, plan).checks
                    if c.colour != status.GREEN and c.component.endswith(f" {name}")]
            raise OnehciError(_("{error}; on {node}: {checks}").format(error=exc, node=name, checks=_lines(here))
                              if here else str(exc)) from None
    result = _wait_status(loaded, plan, timeout, say)
    record["status"] = result.verdict
    record["not_green"] = [c.component for c in result.checks if c.colour != status.GREEN]
    record["seconds"] = round(time.monotonic() - started, 1)
    say(_("{node}: upgraded and healthy in {seconds} s").format(node=name, seconds=f"{record['seconds']:.0f}"))
    return record


# --- the verb ------------------------------------------------------------------------------


def check(loaded, plan, *, say: Say = print) -> list[dict]:
    """--check: what `apt-get upgrade` would change on each node, in upgrade order. Refreshes
    the package lists (apt-get update) and installs nothing."""
    names = order(plan)
    say(ngettext("asking apt on {count} node(s): {nodes}", "asking apt on {count} node(s): {nodes}", len(names))
        .format(count=len(names), nodes=", ".join(names)))
    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        sims = {n: pool.submit(simulate, loaded, plan.node(n)) for n in names}
        return [{"node": n, **sims[n].result().as_dict()} for n in names]


class UpgradeStopped(OnehciError):
    """A node did not come back healthy; the nodes after it were not touched."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def _resumed_node(data: dict) -> str | None:
    """The node whose step an earlier run started and did not finish (its host may be disabled)."""
    step = next((s for s in data["steps"] if s["status"] != journal.DONE), None)
    if step and step["status"] in (journal.STARTED, journal.FAILED):
        return step["name"].removeprefix("upgrade ")
    return None


SETTLE = 90.0  # how long hosts in ERROR get to pass a new monitoring round before the upgrade refuses


def preflight(loaded, plan, allow_host: str | None = None, *, say: Say = print,
              settle: float = SETTLE) -> status.Status:
    """The cloud must be healthy. When only OpenNebula hosts are in the way, a new monitoring
    round of each decides (a probe that timed out once on a busy host is not a broken host)."""
    asked, in_the_way = False, []

    def refusal(left) -> str:
        return _("the cloud is not healthy, so no node is upgraded: {checks} "
                 "(`onehci status` shows it all; set it right, then run the upgrade again)").format(checks=_lines(left))

    def healthy():
        nonlocal asked, in_the_way
        result = status.gather(loaded, plan)
        left = blocking(result, allow_host)
        if not left:
            return result
        if not all(c.component.startswith("host ") or c.component == "opennebula hosts" for c in left):
            raise OnehciError(refusal(left))
        if not asked:
            say(_("asking OpenNebula for a new monitoring round and waiting up to {seconds} s: {checks}").format(
                seconds=f"{settle:.0f}", checks=_lines(left)))
            _monitor_again(loaded, plan, [c.component.removeprefix("host ") for c in left])
            asked = True
        in_the_way = left
        return waiting.Pending(_lines(left))

    return waiting.wait_until(healthy, timeout=settle, every=3, timed_out=lambda _: refusal(in_the_way))


def run(loaded, plan, *, site_arg: str, timeout: float = TIMEOUT, say: Say = print) -> dict:
    """The rolling upgrade. Returns the report ({order, nodes, journal}); raises UpgradeStopped
    (with the same report) at the first node that does not come back healthy."""
    names = order(plan)
    command = f"onehci upgrade {site_arg}"
    steps = [journal.Step(step_name(n)) for n in names]
    fresh = journal.current(loaded.path) is None
    if fresh:  # refused before a journal exists: a refusal leaves no operation open
        say(_("preflight: the cloud must be healthy before a node is taken out"))
        preflight(loaded, plan, say=say)
    with journal.Journal.open(loaded.path, KIND, plan.cluster, steps, params={"order": names},
                              command=command) as jr:
        resumed = _resumed_node(jr.data)
        if resumed:
            say(_("continuing the upgrade at {node} (its earlier attempt did not finish)").format(node=resumed))
        if not fresh:
            say(_("preflight: the cloud must be healthy before a node is taken out"))
            preflight(loaded, plan, allow_host=resumed, say=say)
        say(ngettext("upgrading {count} node(s) one at a time: {order}", "upgrading {count} node(s) one at a time: {order}",
                     len(names)).format(count=len(names), order=" -> ".join(names)))
        results = []
        for index, name in enumerate(names):
            try:
                results.append(jr.run(step_name(name), lambda n=name: upgrade_node(
                    loaded, plan, n, timeout=timeout, resumed=n == resumed, say=say)))
            except OnehciError as exc:
                untouched = names[index + 1:]
                report = {"ok": False, "order": names, "stopped_at": name, "error": str(exc),
                          "untouched": untouched, "nodes": results, "journal": jr.status()}
                if untouched:
                    text = _("upgrade stopped at {node}: {error}; {untouched} not touched. Set {node} right, then run "
                             "`{command}` again: it continues at {node}")
                else:
                    text = _("upgrade stopped at {node}: {error}. Set {node} right, then run `{command}` again: it "
                             "continues at {node}")
                raise UpgradeStopped(text.format(node=name, error=exc, untouched=", ".join(untouched), command=command),
                                     report) from None
        final = jr.finish()
    return {"ok": True, "order": names, "nodes": results, "journal": final}
