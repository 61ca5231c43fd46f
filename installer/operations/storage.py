"""MooseFS during day-2 work: mark a node's chunk disks for removal (a drain) and back, and
wait until the chunk matrix says every chunk has its copies elsewhere.

A mark is also recorded in the state directory (chunk_marks.json) so that a deploy run in the
middle of a rebuild keeps it (inventory: moosefs_chunkserver__marked_for_removal) instead of
quietly undoing the drain."""

from __future__ import annotations

import time
from collections.abc import Callable

from installer import chunkmarks, mfs, remote
from installer.errors import OnehciError

HDD_CFG = "/etc/mfs/mfshdd.cfg"


def set_marked(loaded, node, marked: bool) -> None:
    """Mark (or unmark) every chunk disk of NODE in its mfshdd.cfg and reload its chunkserver."""
    chunkmarks.record(loaded.path, node.hostname, [chunkmarks.disk_id(d) for d in node.chunk_disks] if marked else [])
    edit = r"s|^\*\?/|*/|" if marked else r"s|^\*/|/|"
    remote.check(loaded, node.ip, f"sed -i '{edit}' {HDD_CFG} && systemctl reload moosefs-chunkserver",
                 f"{'marking' if marked else 'unmarking'} the chunk disks of {node.hostname}")


def disk_states(master: str, ip: str) -> list[str]:
    """What the master says of each disk of the chunkserver at IP (`ok`, `marked for removal
    (not ready)`, ...); [] when it knows none."""
    return [row[3] for row in mfs.rows(mfs.mfscli(master, "HD"))
            if len(row) > 3 and row[0].startswith(f"{ip}:")]


def wait_seen_marked(master: str, node, *, timeout: float = 120, interval: float = 2.0) -> None:
    """Until the master reports every disk of NODE marked for removal: before that, a clean
    chunk matrix only means the master has not looked yet."""
    deadline = time.monotonic() + timeout
    while True:
        found = disk_states(master, node.ip)
        if found and all(s.startswith("marked for removal") for s in found):
            return
        if time.monotonic() >= deadline:
            raise OnehciError(f"the MooseFS master does not show {node.hostname}'s disks marked for removal "
                              f"{timeout:.0f} s after the mark (it shows: {', '.join(found) or 'no disk'}); "
                              f"check /etc/mfs/mfshdd.cfg on {node.hostname}, then run the same command again")
        time.sleep(interval)


def unsafe(health: mfs.Health) -> dict[str, int]:
    """Chunks without their full count of copies: {class: count} for missing, endangered, undergoal."""
    return {k: health.chunks.get(k, 0) for k in ("missing", "endangered", "undergoal") if health.chunks.get(k, 0)}


def wait_safe(master: str, *, timeout: float = 1800, say: Callable[[str], None] = print,
              interval: float = 3.0, what: str = "every chunk to have its copies") -> mfs.Health:
    """Until the regular chunk matrix (copies on disks marked for removal not counted) shows no
    missing, endangered or undergoal chunk; progress once per change; a clear error at TIMEOUT."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        health = mfs.health(master)
        left = unsafe(health) if health.reachable else None
        if left == {}:
            return health
        shown = health.error if left is None else ", ".join(f"{n} {k}" for k, n in left.items())
        if shown != last:
            say(f"MooseFS: waiting for {what}: {shown}")
            last = shown
        if time.monotonic() >= deadline:
            raise OnehciError(f"MooseFS still has {shown} after {timeout:.0f} s waiting for {what}; "
                              "`onehci status` shows the chunkservers; run the same command again to keep waiting")
        time.sleep(interval)
