"""OpenNebula hosts during day-2 work: disable, move VMs away, offline, enable, wait until
monitored, through pyone (installer/one.py)."""

from __future__ import annotations

from collections.abc import Callable

import pyone

from installer import one
from installer.errors import OnehciError
from installer.waiting import Pending, wait_until

# one.host.status values (OpenNebula's XML-RPC API)
ENABLE, DISABLE, OFFLINE = 0, 1, 2


def find_host(client, name: str):
    with one.api_errors():
        found = {h.NAME: h for h in client.hostpool.info().HOST or []}.get(name)
    if found is None:
        raise OnehciError(f"host {name} is not registered in OpenNebula")
    return found


def vms_on(client, name: str) -> list[int]:
    """The IDs of the VMs OpenNebula places on host NAME."""
    host = find_host(client, name)
    with one.api_errors():
        info = client.host.info(host.ID)
    return [int(i) for i in (info.VMS.ID if info.VMS is not None and info.VMS.ID else [])]


def set_state(client, name: str, status: int) -> str:
    """ENABLE, DISABLE or OFFLINE host NAME (a no-op when it already is); its state name after."""
    host = find_host(client, name)
    wanted = {ENABLE: (one.MONITORED, one.INIT, one.ERROR), DISABLE: (one.DISABLED,), OFFLINE: (one.OFFLINE,)}
    if host.STATE not in wanted[status]:
        with one.api_errors():
            client.host.status(host.ID, status)
    return one.STATE_NAMES.get(find_host(client, name).STATE, "?")


def running(client, vm: int) -> bool:
    """Is the VM running (or UNKNOWN: its host stopped answering), the VMs the scheduler moves?"""
    with one.api_errors():
        info = client.vm.info(vm)
    return info.STATE == pyone.VM_STATE.ACTIVE and info.LCM_STATE in (pyone.LCM_STATE.RUNNING,
                                                                     pyone.LCM_STATE.UNKNOWN)


def flush(client, name: str, *, timeout: float = 600, say: Callable[[str], None] = print,
          interval: float = 2.0) -> list[int]:
    """Move the running VMs off host NAME (disabled first, so the scheduler does not bring them
    back): each is rescheduled, as `onehost flush` does, and the wait lasts until none of them is
    left there. VMs that do not run (powered off, suspended, stopped) are not moved by the
    scheduler: they stay assigned to NAME, and are said. Returns the IDs of the VMs moved."""
    placed = vms_on(client, name)
    moving = [vm for vm in placed if running(client, vm)]
    resting = [vm for vm in placed if vm not in moving]
    if resting:
        say(f"OpenNebula: {len(resting)} VM(s) on {name} do not run ({', '.join(map(str, resting))}): they stay "
            f"assigned to {name} and start there once it is back (`onevm migrate ID HOST` moves one by hand)")
    if not moving:
        say(f"OpenNebula: no running VM on {name}: nothing to move")
        return []
    say(f"OpenNebula: moving {len(moving)} VM(s) off {name}: {', '.join(map(str, moving))}")
    with one.api_errors():
        for vm in moving:
            client.vm.action("resched", vm)
    def moved():
        left = [vm for vm in vms_on(client, name) if vm in moving]
        return not left or Pending(f"{len(left)} VM(s) ({', '.join(map(str, left))})")

    wait_until(moved, timeout=timeout, every=interval, timed_out=lambda left: (
        f"{left} still on {name} after {timeout:.0f} s: see `onevm show` for why they cannot move (no other host with "
        "room?); run the same command again once they can"))
    return moving


def wait_monitored(client, name: str, *, timeout: float = 300, say: Callable[[str], None] = print) -> None:
    """Until host NAME is MONITORED again (after enable)."""
    state = one.wait_monitored(client, [name], timeout, say)[name]
    if state in (one.STATE_NAMES[one.DISABLED], one.STATE_NAMES[one.OFFLINE]):
        raise OnehciError(f"host {name} is {state}, not MONITORED: enable it first")
