"""A node's (re)install during day-2 work: wait for the installer's callback (the lab stands in
with `lab reinstall`), learn the new SSH host key, wait for the cloud to be healthy."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from installer import environment, remote, state, status
from installer.bootstate import INSTALLED, BootStates
from installer.i18n import _
from installer.waiting import Pending, wait_until

Say = Callable[[str], None]


def installed(loaded, hostname: str) -> bool:
    """Did the node's installer call back since it was last armed?"""
    found = BootStates(state.state_dir(loaded.path)).get(hostname)
    return found is not None and found.state == INSTALLED


# How a node of this site is reinstalled when it is not a server booting from the network: the
# CLI passes the lab's `lab reinstall` for a site running as the rehearsal lab (environment.json
# says so); (loaded, hostname, say=..., new=...) -> what it did.
Reinstall = Callable[..., dict]


def network_install(loaded, hostname: str, *, timeout: float, say: Say, new: bool = False,
                    reinstall: Reinstall | None = None) -> dict:
    """The node installs itself from the network; returns when its install-complete callback
    came. REINSTALL, when given, does the install instead (the rehearsal lab)."""
    if reinstall is not None:
        say(_("{node} is a lab node: `onehci lab reinstall {node}` stands for its network install").format(node=hostname))
        return reinstall(loaded, hostname, say=say, new=new)
    if new:
        text = _("now boot {node} from the network (power it on, or reboot it into PXE): `onehci pxe serve` must be "
                 "running (restart it: it learns a new MAC at start); waiting up to {minutes} min for its "
                 "install-complete callback")
    else:
        text = _("now boot {node} from the network (power it on, or reboot it into PXE): `onehci pxe serve` must be "
                 "running; waiting up to {minutes} min for its install-complete callback")
    say(text.format(node=hostname, minutes=f"{timeout / 60:.0f}"))
    wait_until(lambda: installed(loaded, hostname), timeout=timeout, every=5, timed_out=lambda _pending: (
        _("{node} did not call back within {minutes} min: check its console and `onehci pxe serve`'s "
          "log; run the same command again to keep waiting").format(node=hostname, minutes=f"{timeout / 60:.0f}")))
    return {"node": hostname, "callback": _("install-complete callback received")}


def reconnect(loaded, node, timeout: float = 600) -> str:
    """The installed node has a new SSH host key: forget any old one for its address (the install
    was ours: its callback proved it) and learn the new one once it answers."""
    from installer.deploy import learn_host_keys

    ssh_key, known_hosts = environment.ssh_identity(loaded.path)
    if known_hosts.exists():
        subprocess.run(["ssh-keygen", "-R", node.ip, "-f", str(known_hosts)], capture_output=True)
    def answers():
        learn_host_keys([node], known_hosts, ssh_key)
        return remote.alive(loaded, node.ip)

    wait_until(answers, timeout=timeout, every=3, timed_out=lambda _pending: (
        _("{node} does not answer over SSH {minutes} min after its install").format(node=node.hostname,
                                                                                   minutes=f"{timeout / 60:.0f}")))
    return _("SSH answers with the new host key")


def wait_healthy(loaded, plan, *, timeout: float, say: Say, after: str) -> dict:
    """Until `onehci status` is green but for free space (amber space is no reason to hold an
    operation back); the lines that are not, once per change."""
    last = {"checks": ""}  # what was not green at the last look, for the message at the timeout

    def green():
        found = status.gather(loaded, plan)
        left = status.not_green(found)
        if not left:
            return {"verdict": found.verdict}
        last["checks"] = "; ".join(f"{c.component}: {c.reason}" for c in left)
        return Pending(_("status {verdict}: {checks}").format(verdict=found.verdict, checks=last["checks"]))

    return wait_until(green, timeout=timeout, every=3, say=say, timed_out=lambda _pending: (
        _("the cloud is not healthy {seconds} s after {after}: {checks}; `onehci status` shows "
          "it; run the same command again to keep waiting").format(seconds=f"{timeout:.0f}", after=after,
                                                                   checks=last["checks"])))
