"""`onehci rebuild NODE SITE`: take a failed (or to-be-reinstalled) node out safely, reinstall it
and bring it back, as one journaled operation (installer/journal.py).

    preflight   may it go? (installer/preflight.py, plus: not the MooseFS master); alive or dead
    disable     OpenNebula schedules nothing new on it
    flush       its VMs move to other hosts (alive); listed, not moved (dead)
    offline     OpenNebula stops monitoring it
    drain       its chunk disks marked for removal, until every chunk has its copies elsewhere
                (alive); what is at risk from the chunk matrix (dead)
    arm         its next network boot installs Debian (one-shot, new token)
    reinstall   DESTRUCTIVE: the install, until its install-complete callback (the lab: `lab reinstall`)
    reconnect   its new SSH host key learned, SSH answering
    deploy      Ansible on the node and on what shares keys with it (frontend, KVM hosts); registration
    enable      the host back in OpenNebula, monitored
    undrain     its chunk disks unmarked
    healthy     `onehci status` green

A step a node's roles do not need (flush for a node that is no KVM host...) records why it did
nothing. Only `reinstall` is destructive: interrupted, it counts as done when the node's boot
state says its install called back, and runs again otherwise (the OS disk is erased again, the
chunk disks never are).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from installer import journal, mfs, preflight, remote
from installer.errors import OnehciError
from installer.i18n import _, ngettext
from installer.journal import Step
from installer.operations import hosts, install, storage
from installer.plan import make_plan

Say = Callable[[str], None]

STEPS = [
    Step("preflight"), Step("disable"), Step("flush"), Step("offline"), Step("drain"), Step("arm"),
    Step("reinstall", destructive=True, verify=lambda: _("whether the node was reinstalled (`onehci pxe state` shows "
                                                          "it `installed` once its installer called back)")),
    Step("reconnect"), Step("deploy"), Step("enable"), Step("undrain"), Step("healthy"),
]


class Declined(OnehciError):
    """The technician did not confirm: nothing was changed."""


class Rebuild:
    """The steps' work; each method returns what the journal records."""

    def __init__(self, loaded, hostname: str, *, say: Say, confirm: Callable[[dict], bool],
                 drain_timeout: float, install_timeout: float, healthy_timeout: float,
                 reinstall: install.Reinstall | None = None):
        self.loaded = loaded
        self.plan = make_plan(loaded.site)
        self.node = self.plan.node(hostname)
        self.say = say
        self.confirm = confirm
        self.drain_timeout, self.install_timeout, self.healthy_timeout = drain_timeout, install_timeout, healthy_timeout
        self.reinstaller = reinstall
        self.kvm = self.node is not None and self.node.has("kvm")
        self.chunkserver = self.node is not None and self.node.has("mfs_chunkserver")
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from installer import one

            self._client = one.client_for(self.loaded, self.plan)
        return self._client

    def _alive(self, j: journal.Journal) -> bool:
        return bool((j.data["steps"][0]["result"] or {}).get("alive"))

    # --- the steps ------------------------------------------------------------------

    def preflight(self) -> dict:
        name, master = self.node.hostname, self.plan.moosefs.master
        health = mfs.health(self.plan.moosefs.master_ip)
        verdict = preflight.take_out(self.plan, health, name)
        if not verdict.allowed:
            raise OnehciError(_("{node} cannot be rebuilt now: {refusals}. Nothing was changed").format(
                node=name, refusals="; ".join(verdict.refusals)))
        alive = remote.alive(self.loaded, self.node.ip)
        if not alive and verdict.risk.alive:
            raise OnehciError(_("{node} does not answer over SSH, but its chunkserver is connected to the MooseFS "
                                "master: it runs. Set SSH right (`ssh root@{ip}`), or power {node} off "
                                "to rebuild it as a dead node. Nothing was changed").format(node=name, ip=self.node.ip))
        facts = {"alive": alive, "chunkserver_connected": verdict.risk.alive, "notes": verdict.notes,
                 "risk": verdict.risk.summary, "master": master}
        self.say((_("{node} is alive (answers over SSH)") if alive else _("{node} is dead (no answer over SSH)"))
                 .format(node=name))
        for line in verdict.notes + verdict.risk.summary:
            self.say(f"  {line}")
        if not self.confirm(facts):
            raise Declined(_("rebuild of {node} not confirmed. Nothing was changed").format(node=name))
        return facts

    def disable(self) -> str:
        if not self.kvm:
            return _("not a KVM host")
        return hosts.set_state(self.client, self.node.hostname, hosts.DISABLE)

    def flush(self, alive: bool) -> dict:
        if not self.kvm:
            return {"moved": [], "why": _("not a KVM host")}
        name = self.node.hostname
        others = [h for h in self.plan.opennebula.hosts if h != name]
        if alive and others:
            return {"moved": hosts.flush(self.client, name, say=self.say)}
        left = hosts.vms_on(self.client, name)
        if left and not others:
            self.say(ngettext("OpenNebula: {node} is the only KVM host: its {count} VM(s) cannot move away and stop "
                              "while it is out",
                              "OpenNebula: {node} is the only KVM host: its {count} VM(s) cannot move away and stop "
                              "while it is out", len(left)).format(node=name, count=len(left)))
        elif left:
            self.say(ngettext("OpenNebula: {count} VM(s) were on {node}, which is dead: they cannot be live-moved "
                              "({vms}). Once {node} is powered off for sure (two copies of a VM writing one disk "
                              "destroy it), recreate them elsewhere with `onevm recover --recreate ID`: their disks "
                              "are on MooseFS, reachable from every host",
                              "OpenNebula: {count} VM(s) were on {node}, which is dead: they cannot be live-moved "
                              "({vms}). Once {node} is powered off for sure (two copies of a VM writing one disk "
                              "destroy it), recreate them elsewhere with `onevm recover --recreate ID`: their disks "
                              "are on MooseFS, reachable from every host", len(left))
                     .format(count=len(left), node=name, vms=", ".join(map(str, left))))
        return {"moved": [], "stranded": left}

    def offline(self) -> str:
        if not self.kvm:
            return _("not a KVM host")
        return hosts.set_state(self.client, self.node.hostname, hosts.OFFLINE)

    def drain(self, alive: bool) -> dict:
        if not self.chunkserver:
            return {"drained": False, "why": _("not a chunkserver")}
        master = self.plan.moosefs.master_ip
        if alive and not remote.alive(self.loaded, self.node.ip):
            self.say(_("{node} answered over SSH at the preflight and no longer does: its disks cannot be marked, "
                       "what is at risk follows").format(node=self.node.hostname))
            alive = False
        if not alive:
            risk = preflight.at_risk(self.plan, mfs.health(master), self.node.hostname)
            for line in risk.summary:
                self.say(f"MooseFS: {line}")
            return {"drained": False, "why": _("the node is dead: its copies were not drained"), "risk": risk.summary}
        started = time.monotonic()
        storage.set_marked(self.loaded, self.node, True, say=self.say)
        storage.wait_seen_marked(master, self.node)
        marked_at = mfs.master_time(master)  # from here the master knows: a loop started later proves the copies
        self.say(_("MooseFS: {node}'s chunk disks marked for removal; their chunks are being copied")
                 .format(node=self.node.hostname))
        health = storage.wait_safe(master, timeout=self.drain_timeout, say=self.say, since=marked_at,
                                   what=_("the chunks of {node} to have their copies elsewhere")
                                   .format(node=self.node.hostname))
        loop = mfs.chunk_loop(master)
        return {"drained": True, "seconds": round(time.monotonic() - started, 1), "marked_at": marked_at,
                "proof": {"chunk_loop": {"start": loop[0], "end": loop[1]}, "chunks": health.chunks}}

    def arm(self) -> str:
        from installer import pxe

        where = pxe.arm(self.loaded, self.node.hostname)
        self.say(_("{node} armed: its next network boot installs Debian; {done}").format(node=self.node.hostname,
                                                                                         done=where))
        return where

    def reinstall(self) -> dict:
        return install.network_install(self.loaded, self.node.hostname, timeout=self.install_timeout, say=self.say,
                                       reinstall=self.reinstaller)

    def installed(self) -> bool:
        return install.installed(self.loaded, self.node.hostname)

    def reconnect(self) -> str:
        return install.reconnect(self.loaded, self.node)

    def deploy(self) -> dict:
        from installer.deploy import deploy

        names = {self.node.hostname, self.plan.opennebula.frontend, *self.plan.opennebula.hosts}
        limit = [n.hostname for n in self.plan.nodes if n.hostname in names]
        self.say(_("deploying {nodes} (the node, and who shares SSH keys with it)").format(nodes=", ".join(limit)))
        result = deploy(self.loaded, limit=limit, say=self.say)
        if result.status != "successful" or result.rc != 0:
            from installer import ansible

            ansible.raise_for_failure(result)
        return {"limit": limit, "seconds": round(result.seconds, 1), "run_dir": str(result.run_dir)}

    def enable(self) -> str:
        if not self.kvm:
            return _("not a KVM host")
        hosts.set_state(self.client, self.node.hostname, hosts.ENABLE)
        hosts.wait_monitored(self.client, self.node.hostname, say=self.say)
        return "MONITORED"

    def undrain(self) -> str:
        if not self.chunkserver:
            return _("not a chunkserver")
        storage.set_marked(self.loaded, self.node, False, say=self.say)
        return _("chunk disks unmarked")

    def healthy(self) -> dict:
        return install.wait_healthy(self.loaded, self.plan, timeout=self.healthy_timeout, say=self.say,
                                    after=_("the rebuild"))


def rebuild(loaded, hostname: str, *, say: Say = print, confirm: Callable[[dict], bool] = lambda facts: True,
            answers: dict[str, bool] | None = None, drain_timeout: float = 1800, install_timeout: float = 3600,
            healthy_timeout: float = 600, reinstall: install.Reinstall | None = None) -> dict:
    """Run (or continue) the rebuild of HOSTNAME; the journal as `--json` shows it.

    ANSWERS are the technician's word about an interrupted destructive step ({step: took effect});
    REINSTALL how the node is reinstalled when it does not boot from the network (the lab)."""
    work = Rebuild(loaded, hostname, say=say, confirm=confirm, drain_timeout=drain_timeout,
                   install_timeout=install_timeout, healthy_timeout=healthy_timeout, reinstall=reinstall)
    if work.node is None:
        raise OnehciError(_("{node} is not a node of {site} (its nodes: {nodes})").format(
            node=hostname, site=loaded.path, nodes=", ".join(n.hostname for n in work.plan.nodes)))
    if work.node.has("mfs_master"):
        raise OnehciError(
            _("{node} is the MooseFS master: a reinstall erases its metadata, and a new empty master would "
              "orphan every chunk; move the master first (`onehci recover-master SITE --from METALOGGER_NODE` "
              "after stopping {node}), then rebuild {node}. Nothing was changed").format(node=hostname))
    journal.check_answers(loaded.path, "rebuild", hostname, STEPS, answers or {})
    j = journal.Journal.open(loaded.path, "rebuild", hostname, STEPS,
                             command=f"onehci rebuild {hostname} {loaded.path}")
    with j:
        for step, took_effect in (answers or {}).items():
            j.confirm(step, took_effect)
        if j.data["steps"][0]["status"] != journal.DONE:
            j.preflight("preflight", work.preflight)
        else:
            say(_("continuing the rebuild of {node} at {where}").format(node=hostname, where=j.status()["where"]))
        alive = work._alive(j)
        for name, fn in (("disable", work.disable), ("flush", lambda: work.flush(alive)), ("offline", work.offline),
                         ("drain", lambda: work.drain(alive)), ("arm", work.arm)):
            j.run(name, fn, say=say)
        j.run("reinstall", work.reinstall, check_done=work.installed, say=say)
        for name, fn in (("reconnect", work.reconnect), ("deploy", work.deploy), ("enable", work.enable),
                         ("undrain", work.undrain), ("healthy", work.healthy)):
            j.run(name, fn, say=say)
        say(_("{node} rebuilt: back in MooseFS and OpenNebula, status green").format(node=hostname))
        return j.finish()

