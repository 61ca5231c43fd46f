"""MooseFS during day-2 work: mark a node's chunk disks for removal (a drain) and back, and
wait until the chunk matrix says every chunk has its copies elsewhere.

A mark is recorded in the state directory (chunk_marks.json) and written by the chunkserver role
(inventory: moosefs_chunkserver__marked_for_removal), so a deploy run in the middle of a rebuild
keeps it instead of quietly undoing the drain."""

from __future__ import annotations

import time
from collections.abc import Callable

from installer import chunkmarks, deploy, mfs
from installer.i18n import _
from installer.waiting import Pending, wait_until

def set_marked(loaded, node, marked: bool, *, say: Callable[[str], None] = print) -> None:
    """Mark (or unmark) every chunk disk of NODE for removal, through the chunkserver role."""
    disks = [chunkmarks.disk_id(d) for d in node.chunk_disks] if marked else []
    deploy.apply_chunk_marks(loaded, node.hostname, disks, say=say)


def disk_states(master: str, ip: str) -> list[str]:
    """What the master says of each disk of the chunkserver at IP (`ok`, `marked for removal
    (not ready)`, ...); [] when it knows none."""
    return [row[3] for row in mfs.rows(mfs.mfscli(master, "HD"))
            if len(row) > 3 and row[0].startswith(f"{ip}:")]


def wait_seen_marked(master: str, node, *, timeout: float = 120, interval: float = 2.0) -> None:
    """Until the master reports every disk of NODE marked for removal: before that, a clean
    chunk matrix only means the master has not looked yet."""
    def all_marked():
        found = disk_states(master, node.ip)
        return bool(found) and all(s.startswith("marked for removal") for s in found) or Pending(", ".join(found))

    wait_until(all_marked, timeout=timeout, every=interval, timed_out=lambda shown: (
        _("the MooseFS master does not show {node}'s disks marked for removal {seconds} s after the "
          "mark (it shows: {shown}); check /etc/mfs/mfshdd.cfg on {node}, then run the same "
          "command again").format(node=node.hostname, seconds=f"{timeout:.0f}", shown=shown or _("no disk"))))


def unsafe(health: mfs.Health) -> dict[str, int]:
    """Chunks without their full count of copies: {class: count} for missing, endangered, undergoal."""
    return {k: health.chunks.get(k, 0) for k in ("missing", "endangered", "undergoal") if health.chunks.get(k, 0)}


def wait_loop_after(master: str, since: float, *, timeout: float, say: Callable[[str], None] = print,
                    interval: float = 3.0) -> None:
    """Until a chunk loop of the master that started at or after SINCE (the master's own clock)
    has ended. The chunk matrix is the last loop's: read before that, it may describe the cloud
    as it was before SINCE (seen: disks marked, the matrix clean 0.3 s later, the node stopped,
    14 of 20 chunks down to one copy)."""
    def loop_after():
        if mfs.chunk_loop(master)[0] >= since:
            return True
        if mfs.chunk_count(master) == 0:
            return True  # no chunk, no loop reported (MooseFS shows "no data"), and nothing to copy
        return Pending(_("MooseFS: waiting for the master's next full chunk loop (the chunk matrix is the last "
                         "loop's; one loop takes CHUNKS_LOOP_MIN_TIME at least: 300 s by default)"))

    wait_until(loop_after, timeout=timeout, every=interval, say=say, timed_out=lambda _pending: (
        _("the MooseFS master has not completed a chunk loop in {seconds} s: `mfscli -SIL` shows its loops; run "
          "the same command again to keep waiting").format(seconds=f"{timeout:.0f}")))


def wait_safe(master: str, *, timeout: float = 1800, say: Callable[[str], None] = print,
              interval: float = 3.0, what: str = "", since: float | None = None) -> mfs.Health:
    """Until the regular chunk matrix (copies on disks marked for removal not counted) shows no
    missing, endangered or undergoal chunk; progress once per change; a clear error at TIMEOUT.
    SINCE (the master's clock): only a matrix of a chunk loop started after it counts. WHAT is
    awaited, in words (default: every chunk to have its copies)."""
    what = what or _("every chunk to have its copies")
    deadline = time.monotonic() + timeout
    if since is not None:
        wait_loop_after(master, since, timeout=timeout, say=say)

    def safe():
        health = mfs.health(master)
        left = unsafe(health) if health.reachable else None
        if left == {}:
            return health
        return Pending(health.error if left is None else ", ".join(f"{n} {k}" for k, n in left.items()))

    return wait_until(safe, timeout=max(0.0, deadline - time.monotonic()), every=interval,
                      say=lambda shown: say(_("MooseFS: waiting for {what}: {shown}").format(what=what, shown=shown)),
                      timed_out=lambda shown: _("MooseFS still has {shown} after {seconds} s waiting for {what}; "
                                                "`onehci status` shows the chunkservers; run the same command again "
                                                "to keep waiting").format(shown=shown, seconds=f"{timeout:.0f}",
                                                                          what=what))
