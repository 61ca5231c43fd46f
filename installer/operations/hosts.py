"""OpenNebula hosts during day-2 work: disable, move VMs away, offline, enable, wait until
monitored, through pyone (installer/one.py)."""

from __future__ import annotations

from collections.abc import Callable

import pyone

from installer import one
from installer.errors import OnehciError
from installer.i18n import _, ngettext
from installer.waiting import Pending, wait_until

# one.host.status values (OpenNebula's XML-RPC API)
ENABLE, DISABLE, OFFLINE = 0, 1, 2


def find_host(client, name: str):
    with one.api_errors():
        found = {h.NAME: h for h in client.hostpool.info().HOST or []}.get(name)
    if found is None:
        raise OnehciError(_("host {name} is not registered in OpenNebula").format(name=name))
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
        say(ngettext("OpenNebula: {count} VM(s) on {name} do not run ({vms}): they stay assigned to {name} and start "
                     "there once it is back (`onevm migrate ID HOST` moves one by hand)",
                     "OpenNebula: {count} VM(s) on {name} do not run ({vms}): they stay assigned to {name} and start "
                     "there once it is back (`onevm migrate ID HOST` moves one by hand)", len(resting))
            .format(count=len(resting), name=name, vms=", ".join(map(str, resting))))
    if not moving:
        say(_("OpenNebula: no running VM on {name}: nothing to move").format(name=name))
        return []
    say(ngettext("OpenNebula: moving {count} VM(s) off {name}: {vms}", "OpenNebula: moving {count} VM(s) off {name}: {vms}",
                 len(moving)).format(count=len(moving), name=name, vms=", ".join(map(str, moving))))
    with one.api_errors():
        for vm in moving:
            client.vm.action("resched", vm)
    def moved():
        left = [vm for vm in vms_on(client, name) if vm in moving]
        return not left or Pending(ngettext("{count} VM(s) ({vms})", "{count} VM(s) ({vms})", len(left)).format(
            count=len(left), vms=", ".join(map(str, left))))

    wait_until(moved, timeout=timeout, every=interval, timed_out=lambda left: (
        _("{vms} still on {name} after {seconds} s: see `onevm show` for why they cannot move (no other host with "
          "room?); run the same command again once they can").format(vms=left, name=name, seconds=f"{timeout:.0f}")))
    return moving


def wait_monitored(client, name: str, *, timeout: float = 300, say: Callable[[str], None] = print) -> None:
    """Until host NAME is MONITORED again (after enable)."""
    state = one.wait_monitored(client, [name], timeout, say)[name]
    if state in (one.STATE_NAMES[one.DISABLED], one.STATE_NAMES[one.OFFLINE]):
        raise OnehciError(_("host {name} is {state}, not MONITORED: enable it first").format(name=name, state=state))
