"""`onehci add-node NODE SITE`: a node newly written in site.yml joins the cloud, as one journaled
operation (installer/journal.py).

    check      NODE is in the site and was never deployed; every deployed node keeps its address and MAC
    arm        its first network boot installs Debian; the boot tree knows its MAC
    install    DESTRUCTIVE (it erases the new server's OS disk): until its install-complete callback
    reconnect  its SSH host key learned, SSH answering
    deploy     the whole site: every node learns the new one (/etc/hosts, SSH keys), the node gets
               its roles; registration adds it to OpenNebula when it is a KVM host
    healthy    `onehci status` green (a new chunkserver connected, a new host monitored)
"""

from __future__ import annotations

from collections.abc import Callable

from installer import journal
from installer.errors import OnehciError
from installer.i18n import _
from installer.journal import Step
from installer.operations import install
from installer.plan import make_plan

Say = Callable[[str], None]

STEPS = [
    Step("check"), Step("arm"),
    Step("install", destructive=True, verify=lambda: _("whether the new node installed itself (`onehci pxe state` "
                                                        "shows it `installed` once its installer called back)")),
    Step("reconnect"), Step("deploy"), Step("healthy"),
]


def moved(deployed: dict[str, dict], plan) -> list[str]:
    """Deployed nodes the site now gives another address or MAC, or no longer has, in words."""
    problems = []
    for name, was in sorted(deployed.items()):
        node = plan.node(name)
        if node is None:
            problems.append(_("{node} (deployed at {ip}) is no longer in the site").format(node=name, ip=was["ip"]))
            continue
        for key in ("ip", "mac"):
            if getattr(node, key) != was[key]:
                if key == "ip" and node.ip_allocated:
                    text = _("{node} would move from {key} {was} to {now} (the plan allocates it: write `ip: {was}` "
                             "for it)")
                else:
                    text = _("{node} would move from {key} {was} to {now}")
                problems.append(text.format(node=name, key=key, was=was[key], now=getattr(node, key)))
    return problems


def check(loaded, plan, hostname: str) -> dict:
    from installer.deploy import deployed

    node = plan.node(hostname)
    if node is None:
        raise OnehciError(_("{node} is not in {site}: write it under `nodes:` first (its nodes: {nodes}). Nothing "
                            "was changed").format(node=hostname, site=loaded.path,
                                                  nodes=", ".join(n.hostname for n in plan.nodes)))
    done = deployed(loaded.path)
    if not done:
        raise OnehciError(_("no finished deploy of {site} is recorded (state/deployed.json, written by "
                            "`onehci deploy` since add-node exists): take {node} out of site.yml, run `onehci "
                            "deploy`, write {node} back, then add it. Nothing was changed").format(site=loaded.path,
                                                                                                 node=hostname))
    if hostname in done:
        raise OnehciError(_("{node} was already deployed (at {ip}): to reinstall it, use `onehci rebuild {node}`. "
                            "Nothing was changed").format(node=hostname, ip=done[hostname]["ip"]))
    problems = moved(done, plan)
    if problems:
        raise OnehciError(_("adding {node} would change deployed nodes: {problems}. Nothing was changed").format(
            node=hostname, problems="; ".join(problems)))
    return {"node": hostname, "ip": node.ip, "mac": node.mac, "roles": node.roles,
            "unchanged": sorted(done)}


def add_node(loaded, hostname: str, *, say: Say = print, answers: dict[str, bool] | None = None,
             install_timeout: float = 3600, healthy_timeout: float = 600,
             reinstall: install.Reinstall | None = None) -> dict:
    """Run (or continue) adding HOSTNAME; the journal as `--json` shows it. REINSTALL: how the
    node is installed when it does not boot from the network (installer/operations/install.py)."""
    plan = make_plan(loaded.site)
    journal.check_answers(loaded.path, "add-node", hostname, STEPS, answers or {})
    first = journal.current(loaded.path) is None
    if first:
        check(loaded, plan, hostname)  # refused before a journal exists: nothing is left behind
    with journal.Journal.open(loaded.path, "add-node", hostname, STEPS,
                              command=f"onehci add-node {hostname} {loaded.path}") as j:
        for name, took_effect in (answers or {}).items():
            j.confirm(name, took_effect)
        if not first:
            say(_("continuing the addition of {node} at {where}").format(node=hostname, where=j.status()["where"]))
        node = plan.node(hostname)

        def deploy() -> dict:
            from installer import ansible
            from installer.deploy import deploy as run_deploy

            say(_("deploying the whole site: every node learns {node}").format(node=hostname))
            result = run_deploy(loaded, say=say)
            ansible.raise_for_failure(result)
            return {"seconds": round(result.seconds, 1), "run_dir": str(result.run_dir)}

        def arm() -> str:
            from installer import pxe

            where = pxe.arm(loaded, hostname)
            say(_("{node} armed: its first network boot installs Debian; {done}").format(node=hostname, done=where))
            return where

        steps: list[tuple[str, Callable]] = [
            ("check", lambda: check(loaded, plan, hostname)),
            ("arm", arm),
            ("install", lambda: install.network_install(loaded, hostname, timeout=install_timeout, say=say,
                                                        new=True, reinstall=reinstall)),
            ("reconnect", lambda: install.reconnect(loaded, node)),
            ("deploy", deploy),
            ("healthy", lambda: install.wait_healthy(loaded, plan, timeout=healthy_timeout, say=say,
                                                     after=_("adding {node}").format(node=hostname))),
        ]
        for name, fn in steps:
            j.run(name, fn, check_done=(lambda: install.installed(loaded, hostname)) if name == "install" else None,
                  say=say)
        say(_("{node} added: {roles}; status green").format(node=hostname, roles=", ".join(node.roles)))
        return j.finish()
