"""`onehci lab reinstall NODE`: the lab's stand-in for a PXE reinstall of one server.

A real reinstall erases the OS disk and keeps the other disks; the Debian installer then calls
back with the node's one-shot token. Here: the node's container is stopped hard, its root
filesystem (the overlay's upper layer) is thrown away, and `lab up` boots it again from the base
image with the same MAC, address and chunk disks, and new SSH host keys. Then the same callback
as the installer's marks the node installed, when `pxe arm` (or a rebuild) had armed it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

from installer import state
from installer.bootstate import INSTALL, BootStates
from installer.errors import OnehciError
from installer.lab import core, rootfs


def reinstall(loaded, hostname: str, say: Callable[[str], None] = core._quiet, new: bool = False) -> dict:
    """Reinstall one node of a running lab; returns {"node", "host_key", "callback"}. NEW: the
    node may never have been built (a node just added to the site: its first install)."""
    if loaded.site.node(hostname) is None:
        names = ", ".join(n.hostname for n in loaded.site.nodes)
        raise OnehciError(f"no node named {hostname} in {loaded.path} (nodes: {names})")
    core.check_host()
    node_dir = core.lab_dir(loaded) / hostname
    if not (node_dir / "upper").exists() and not new:
        raise OnehciError(f"{hostname} was never built: start the lab with `onehci lab up` first")
    old_key = rootfs.host_key(node_dir / "upper") if (node_dir / "upper/etc/ssh/ssh_host_ed25519_key.pub").exists() else ""
    try:
        core.kill_node(loaded, hostname)
        say(f"{hostname}: stopped hard")
    except OnehciError:
        pass  # already stopped: nothing to pull the plug on
    rootfs.unmount_all(node_dir / "root")
    for layer in ("upper", "work"):  # the OS disk; node_dir/disks (the chunk disks) stays
        shutil.rmtree(node_dir / layer, ignore_errors=True)
    say(f"{hostname}: root filesystem erased; the chunk disks are kept")
    core.up(loaded, say=say)
    new_key = rootfs.host_key(node_dir / "root")
    if new_key == old_key:
        raise OnehciError(f"{hostname} came back with its old SSH host key: the reinstall did not happen")
    boots = BootStates(state.state_dir(loaded.path))
    armed = boots.get(hostname)
    callback = "not armed: no callback (arm it first with `onehci pxe arm` to rehearse a rebuild)"
    if armed is not None and armed.state == INSTALL:
        boots.complete(hostname, armed.token)  # what the installer's finish script sends
        callback = "install-complete callback sent: the node boots from its disk from now on"
    say(f"{hostname}: reinstalled with a new SSH host key; {callback}")
    return {"node": hostname, "host_key": new_key, "callback": callback}
