"""May this node be taken out of the cluster now (rebuilt, reinstalled, removed)? Pure rules
over the plan (who has which role) and MooseFS's health (who is connected, the chunk matrix);
each refusal is the reason, written for the technician. And what is at risk of being lost
when a node's chunk copies are gone.

The verbs gather the facts (mfs.health) and ask here before they change anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from installer.errors import OnehciError
from installer.i18n import _, ngettext
from installer.mfs import Health
from installer.plan import Plan

ONE_DB = "/var/lib/one/one.db"


@dataclass(frozen=True)
class Risk:
    """What losing the node's chunk copies costs, from the chunk matrix. `known` is False when
    the master does not answer; `alive` when the node's chunkserver is connected."""

    node: str
    known: bool
    alive: bool
    copies: int  # chunk copies the node's chunkserver holds now (0 when not connected)
    missing: int  # no copy left
    endangered: int  # one copy left
    undergoal: int  # fewer copies than the goal, more than one
    summary: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Preflight:
    node: str
    refusals: list[str]
    notes: list[str]  # true and worth saying before the confirmation, but no reason to refuse
    risk: Risk

    @property
    def allowed(self) -> bool:
        return not self.refusals

    def as_dict(self) -> dict:
        return {"node": self.node, "allowed": self.allowed, "refusals": self.refusals, "notes": self.notes,
                "risk": self.risk.as_dict()}


def _node(plan: Plan, hostname: str):
    node = plan.node(hostname)
    if node is None:
        raise OnehciError(_("{node} is not a node of the site (its nodes: {nodes})").format(
            node=hostname, nodes=", ".join(n.hostname for n in plan.nodes)))
    return node


def _names(plan: Plan, ips: list[str]) -> str:
    by_ip = {n.ip: n.hostname for n in plan.nodes}
    return ", ".join(by_ip.get(ip, ip) for ip in ips)  # a chunkserver the site does not know shows its address


def _unreachable(health: Health) -> str:
    return health.error or _("the MooseFS master {master} does not answer").format(master=health.master)


def at_risk(plan: Plan, health: Health, hostname: str) -> Risk:
    node = _node(plan, hostname)
    if not health.reachable:
        return Risk(hostname, False, False, 0, 0, 0, 0, [_("unknown: {reason}").format(reason=_unreachable(health))])
    mine = next((c for c in health.chunkservers if c.ip == node.ip), None)
    missing, endangered, undergoal = (health.chunks.get(k, 0) for k in ("missing", "endangered", "undergoal"))
    goal = plan.moosefs.goal
    summary = []
    if mine is not None:
        summary.append(ngettext("{node} holds {count} chunk copy; a drain copies them to the other chunkservers "
                                "before it goes",
                                "{node} holds {count} chunk copies; a drain copies them to the other chunkservers "
                                "before it goes", mine.chunks).format(node=hostname, count=mine.chunks))
    elif not node.has("mfs_chunkserver"):
        summary.append(_("{node} keeps no chunks: no data depends on it").format(node=hostname))
    if missing:
        if mine:
            text = ngettext("{count} chunk missing: no copy left; the files using them cannot be read, and are lost "
                            "for good unless the chunkserver that holds them comes back",
                            "{count} chunks missing: no copy left; the files using them cannot be read, and are lost "
                            "for good unless the chunkserver that holds them comes back", missing)
        else:
            text = ngettext("{count} chunk missing: no copy left; the files using them cannot be read, and are lost "
                            "for good unless {node}'s chunk disks come back",
                            "{count} chunks missing: no copy left; the files using them cannot be read, and are lost "
                            "for good unless {node}'s chunk disks come back", missing)
        summary.append(text.format(count=missing, node=hostname))
    if endangered:
        summary.append(ngettext("{count} chunk endangered: one copy left, one more failed disk or node loses them; "
                                "MooseFS is copying them",
                                "{count} chunks endangered: one copy left, one more failed disk or node loses them; "
                                "MooseFS is copying them", endangered).format(count=endangered))
    if undergoal:
        summary.append(ngettext("{count} chunk undergoal: fewer than {goal} copies but more than one; "
                                "MooseFS is copying them",
                                "{count} chunks undergoal: fewer than {goal} copies but more than one; "
                                "MooseFS is copying them", undergoal).format(count=undergoal, goal=goal))
    if mine is None and node.has("mfs_chunkserver") and not (missing or endangered or undergoal):
        summary.append(_("nothing is at risk: every chunk has its {goal} copies on the other chunkservers")
                       .format(goal=goal))
    return Risk(hostname, True, mine is not None, mine.chunks if mine else 0, missing, endangered, undergoal,
                summary)


def take_out(plan: Plan, health: Health, hostname: str) -> Preflight:
    """Every reason not to take HOSTNAME out now (none: it may go), notes, and what is at risk."""
    node = _node(plan, hostname)
    refusals: list[str] = []
    notes: list[str] = []
    if node.has("frontend"):
        refusals.append(_("{node} is the OpenNebula frontend: rebuilding it means reinstalling oned and losing "
                          "its database ({database}: every VM, image, host and network definition) and oneadmin's SSH "
                          "keys, which onehci cannot back up and restore yet; it does not rebuild a frontend")
                        .format(node=hostname, database=ONE_DB))
    if node.has("kvm") and [n.hostname for n in plan.with_role("kvm")] == [hostname]:
        notes.append(_("{node} is the only KVM host: its VMs cannot move away and stop while it is out")
                     .format(node=hostname))
    risk = at_risk(plan, health, hostname)
    if not health.reachable:
        master = plan.moosefs.master
        refusals.append(_("{reason}: onehci cannot tell which chunk copies are left; if {master} is lost, its "
                          "metadata must be recovered from a metalogger first").format(reason=_unreachable(health),
                                                                                        master=master))
        return Preflight(hostname, refusals, notes, risk)

    if node.has("mfs_master"):
        loggers = [ip for ip in health.metaloggers if ip != node.ip]
        if not loggers:
            refusals.append(_("{node} is the MooseFS master and no metalogger on another node is connected: its "
                              "metadata (every file's name and where its chunks are) would have no copy anywhere "
                              "while it is out; connect one first (role mfs_metalogger on another node, then "
                              "onehci deploy)").format(node=hostname))
        else:
            notes.append(_("{node} is the MooseFS master: the whole filesystem (every VM disk) stops while it "
                           "is out, and its metadata comes back from the metalogger on {metaloggers}")
                         .format(node=hostname, metaloggers=_names(plan, loggers)))

    if node.has("mfs_chunkserver"):
        others = [c for c in health.chunkservers if c.ip != node.ip]
        usable = [c.ip for c in others if not c.maintenance]
        resting = [c.ip for c in others if c.maintenance]
        goal = plan.moosefs.goal
        if len(usable) < goal:
            # in maintenance: going away soon, so not counted to hold copies
            detail = "; ".join(([_names(plan, usable)] if usable else [])
                               + ([_("{nodes} in maintenance, not counted").format(nodes=_names(plan, resting))]
                                  if resting else []))
            if usable:
                text = ngettext("{node} is a chunkserver, and without it {count} chunkserver is connected{detail}, "
                                "fewer than storage.goal {goal}: MooseFS could not keep {goal} copies of every chunk; "
                                "bring back or add a chunkserver first",
                                "{node} is a chunkserver, and without it {count} chunkservers are connected{detail}, "
                                "fewer than storage.goal {goal}: MooseFS could not keep {goal} copies of every chunk; "
                                "bring back or add a chunkserver first", len(usable))
            else:
                text = _("{node} is a chunkserver, and without it no chunkserver is connected{detail}, fewer than "
                         "storage.goal {goal}: MooseFS could not keep {goal} copies of every chunk; bring back or add a "
                         "chunkserver first")
            refusals.append(text.format(node=hostname, count=len(usable), detail=f" ({detail})" if detail else "",
                                        goal=goal))

    if risk.missing:
        if node.has("mfs_chunkserver") and not risk.alive:
            refusals.append(ngettext(
                "MooseFS has {count} missing chunk (no copy left) and {node}'s chunkserver is not connected: the only "
                "copies may be on its chunk disks; bring {node} back as it is (or its disks into another chunkserver) "
                "before rebuilding it",
                "MooseFS has {count} missing chunks (no copy left) and {node}'s chunkserver is not connected: the only "
                "copies may be on its chunk disks; bring {node} back as it is (or its disks into another chunkserver) "
                "before rebuilding it", risk.missing).format(count=risk.missing, node=hostname))
        else:
            refusals.append(ngettext(
                "MooseFS already has {count} missing chunk (no copy left): the files using them cannot be read, and "
                "taking {node} out now could lose more; bring back the chunkserver that holds them first (onehci "
                "status names the chunkservers that are missing)",
                "MooseFS already has {count} missing chunks (no copy left): the files using them cannot be read, and "
                "taking {node} out now could lose more; bring back the chunkserver that holds them first (onehci "
                "status names the chunkservers that are missing)", risk.missing).format(count=risk.missing,
                                                                                         node=hostname))
    return Preflight(hostname, refusals, notes, risk)
