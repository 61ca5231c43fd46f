"""May this node be taken out of the cluster now (rebuilt, reinstalled, removed)? Pure rules
over the plan (who has which role) and MooseFS's health (who is connected, the chunk matrix);
each refusal is the reason, written for the technician. And what is at risk of being lost
when a node's chunk copies are gone.

The verbs gather the facts (mfs.health) and ask here before they change anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from installer.errors import OnehciError
from installer.mfs import Health
from installer.plan import Plan

ONE_DB = "/var/lib/one/one.db"


def _count(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


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
        raise OnehciError(f"{hostname} is not a node of the site (its nodes: "
                          f"{', '.join(n.hostname for n in plan.nodes)})")
    return node


def _names(plan: Plan, ips: list[str]) -> str:
    by_ip = {n.ip: n.hostname for n in plan.nodes}
    return ", ".join(by_ip.get(ip, ip) for ip in ips)  # a chunkserver the site does not know shows its address


def at_risk(plan: Plan, health: Health, hostname: str) -> Risk:
    node = _node(plan, hostname)
    if not health.reachable:
        return Risk(hostname, False, False, 0, 0, 0, 0,
                    [f"unknown: {health.error or f'the MooseFS master {health.master} does not answer'}"])
    mine = next((c for c in health.chunkservers if c.ip == node.ip), None)
    missing, endangered, undergoal = (health.chunks.get(k, 0) for k in ("missing", "endangered", "undergoal"))
    goal = plan.moosefs.goal
    summary = []
    if mine is not None:
        summary.append(f"{hostname} holds {_count(mine.chunks, 'chunk copy', 'chunk copies')}; "
                       "a drain copies them to the other chunkservers before it goes")
    elif not node.has("mfs_chunkserver"):
        summary.append(f"{hostname} keeps no chunks: no data depends on it")
    if missing:
        back = "the chunkserver that holds them comes back" if mine else f"{hostname}'s chunk disks come back"
        summary.append(f"{_count(missing, 'chunk')} missing: no copy left; the files using them cannot be read, "
                       f"and are lost for good unless {back}")
    if endangered:
        summary.append(f"{_count(endangered, 'chunk')} endangered: one copy left, one more failed disk or node "
                       "loses them; MooseFS is copying them")
    if undergoal:
        summary.append(f"{_count(undergoal, 'chunk')} undergoal: fewer than {goal} copies but more than one; "
                       "MooseFS is copying them")
    if mine is None and node.has("mfs_chunkserver") and not (missing or endangered or undergoal):
        summary.append(f"nothing is at risk: every chunk has its {goal} copies on the other chunkservers")
    return Risk(hostname, True, mine is not None, mine.chunks if mine else 0, missing, endangered, undergoal,
                summary)


def take_out(plan: Plan, health: Health, hostname: str) -> Preflight:
    """Every reason not to take HOSTNAME out now (none: it may go), notes, and what is at risk."""
    node = _node(plan, hostname)
    refusals: list[str] = []
    notes: list[str] = []
    if node.has("frontend"):
        refusals.append(f"{hostname} is the OpenNebula frontend: rebuilding it means reinstalling oned and losing "
                        f"its database ({ONE_DB}: every VM, image, host and network definition) and oneadmin's SSH "
                        "keys, which onehci cannot back up and restore yet; it does not rebuild a frontend")
    if node.has("kvm") and [n.hostname for n in plan.with_role("kvm")] == [hostname]:
        notes.append(f"{hostname} is the only KVM host: its VMs cannot move away and stop while it is out")
    risk = at_risk(plan, health, hostname)
    if not health.reachable:
        master = plan.moosefs.master
        refusals.append(f"{health.error or f'the MooseFS master {health.master} does not answer'}: onehci cannot "
                        f"tell which chunk copies are left; if {master} is lost, its metadata must be recovered "
                        "from a metalogger first")
        return Preflight(hostname, refusals, notes, risk)

    if node.has("mfs_master"):
        loggers = [ip for ip in health.metaloggers if ip != node.ip]
        if not loggers:
            refusals.append(f"{hostname} is the MooseFS master and no metalogger on another node is connected: its "
                            "metadata (every file's name and where its chunks are) would have no copy anywhere "
                            "while it is out; connect one first (role mfs_metalogger on another node, then "
                            "onehci deploy)")
        else:
            notes.append(f"{hostname} is the MooseFS master: the whole filesystem (every VM disk) stops while it "
                         f"is out, and its metadata comes back from the metalogger on {_names(plan, loggers)}")

    if node.has("mfs_chunkserver"):
        others = [c for c in health.chunkservers if c.ip != node.ip]
        usable = [c.ip for c in others if not c.maintenance]
        resting = [c.ip for c in others if c.maintenance]
        goal = plan.moosefs.goal
        if len(usable) < goal:
            # in maintenance: going away soon, so not counted to hold copies
            detail = "; ".join(([_names(plan, usable)] if usable else [])
                               + ([f"{_names(plan, resting)} in maintenance, not counted"] if resting else []))
            connected = ("no chunkserver is connected" if not usable else
                         f"{_count(len(usable), 'chunkserver')} {'is' if len(usable) == 1 else 'are'} connected")
            connected += f" ({detail})" if detail else ""
            refusals.append(f"{hostname} is a chunkserver, and without it {connected}, fewer than storage.goal "
                            f"{goal}: MooseFS could not keep {goal} copies of every chunk; bring back or add a "
                            "chunkserver first")

    if risk.missing:
        if node.has("mfs_chunkserver") and not risk.alive:
            refusals.append(f"MooseFS has {_count(risk.missing, 'missing chunk')} (no copy left) and {hostname}'s "
                            "chunkserver is not connected: the only copies may be on its chunk disks; bring "
                            f"{hostname} back as it is (or its disks into another chunkserver) before rebuilding it")
        else:
            refusals.append(f"MooseFS already has {_count(risk.missing, 'missing chunk')} (no copy left): the files "
                            f"using them cannot be read, and taking {hostname} out now could lose more; bring back "
                            "the chunkserver that holds them first (onehci status names the chunkservers that are missing)")
    return Preflight(hostname, refusals, notes, risk)
