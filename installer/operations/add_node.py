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
from installer.journal import Step
from installer.operations import install
from installer.plan import make_plan

Say = Callable[[str], None]

STEPS = [
    Step("check"), Step("arm"),
    Step("install", destructive=True, verify="whether the new node installed itself (`onehci pxe state` shows it "
         "`installed` once its installer called back)"),
    Step("reconnect"), Step("deploy"), Step("healthy"),
]


def moved(deployed: dict[str, dict], plan) -> list[str]:
    """Deployed nodes the site now gives another address or MAC, or no longer has, in words."""
    problems = []
    for name, was in sorted(deployed.items()):
        node = plan.node(name)
        if node is None:
            problems.append(f"{name} (deployed at {was['ip']}) is no longer in the site")
            continue
        for key in ("ip", "mac"):
            if getattr(node, key) != was[key]:
                how = " (the plan allocates it: write `ip: " + was["ip"] + "` for it)" if (
                    key == "ip" and node.ip_allocated) else ""
                problems.append(f"{name} would move from {key} {was[key]} to {getattr(node, key)}{how}")
    return problems


def check(loaded, plan, hostname: str) -> dict:
    from installer.deploy import deployed

    node = plan.node(hostname)
    if node is None:
        raise OnehciError(f"{hostname} is not in {loaded.path}: write it under `nodes:` first (its nodes: "
                          f"{', '.join(n.hostname for n in plan.nodes)}). Nothing was changed")
    done = deployed(loaded.path)
    if not done:
        raise OnehciError(f"no finished deploy of {loaded.path} is recorded (state/deployed.json, written by "
                          f"`onehci deploy` since add-node exists): take {hostname} out of site.yml, run `onehci "
                          f"deploy`, write {hostname} back, then add it. Nothing was changed")
    if hostname in done:
        raise OnehciError(f"{hostname} was already deployed (at {done[hostname]['ip']}): to reinstall it, "
                          f"use `onehci rebuild {hostname}`. Nothing was changed")
    problems = moved(done, plan)
    if problems:
        raise OnehciError("adding " + hostname + " would change deployed nodes: " + "; ".join(problems)
                          + ". Nothing was changed")
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
            say(f"continuing the addition of {hostname} at {j.status()['where']}")
        node = plan.node(hostname)

        def deploy() -> dict:
            from installer import ansible
            from installer.deploy import deploy as run_deploy

            say(f"deploying the whole site: every node learns {hostname}")
            result = run_deploy(loaded, say=say)
            ansible.raise_for_failure(result)
            return {"seconds": round(result.seconds, 1), "run_dir": str(result.run_dir)}

        def arm() -> str:
            from installer import pxe

            where = pxe.arm(loaded, hostname)
            say(f"{hostname} armed: its first network boot installs Debian; {where}")
            return where

        steps: list[tuple[str, Callable]] = [
            ("check", lambda: check(loaded, plan, hostname)),
            ("arm", arm),
            ("install", lambda: install.network_install(loaded, hostname, timeout=install_timeout, say=say,
                                                        new=True, reinstall=reinstall)),
            ("reconnect", lambda: install.reconnect(loaded, node)),
            ("deploy", deploy),
            ("healthy", lambda: install.wait_healthy(loaded, plan, timeout=healthy_timeout, say=say,
                                                     after=f"adding {hostname}")),
        ]
        for name, fn in steps:
            j.run(name, fn, check_done=(lambda: install.installed(loaded, hostname)) if name == "install" else None,
                  say=say)
        say(f"{hostname} added: {', '.join(node.roles)}; status green")
        return j.finish()
