"""Processes the lab starts, known by PID *and* start time so that a recycled PID is
never mistaken for (or killed as) one of ours."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from installer.errors import OnehciError
from installer.waiting import Pending, wait_until


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int  # clock ticks since boot, field 22 of /proc/PID/stat

    def as_dict(self) -> dict:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_dict(cls, data: dict | None) -> Proc | None:
        return cls(int(data["pid"]), int(data["start"])) if data else None


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return text[text.rindex(")") + 2:].split()


def identify(pid: int) -> Proc | None:
    fields = _stat(pid)
    return Proc(pid, int(fields[19])) if fields else None


def _reap(pid: int) -> None:
    """A child of this process that exited stays a zombie until waited for."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def alive(proc: Proc | None) -> bool:
    if proc is None:
        return False
    _reap(proc.pid)
    fields = _stat(proc.pid)
    return bool(fields) and fields[0] != "Z" and int(fields[19]) == proc.start


def signal_proc(proc: Proc | None, sig: int) -> None:
    if alive(proc):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(procs: list[Proc | None], timeout: float) -> bool:
    """Wait until none of `procs` is alive; False if some still are at the deadline."""
    try:
        return wait_until(lambda: not any(alive(p) for p in procs) or Pending("alive"), timeout=timeout, every=0.1,
                          timed_out=lambda _: "still alive")
    except OnehciError:
        return False


def stop(procs: list[Proc | None], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Ask with `sig`, then SIGKILL what is left after `timeout`."""
    for proc in procs:
        signal_proc(proc, sig)
    if not wait_gone(procs, timeout):
        for proc in procs:
            signal_proc(proc, signal.SIGKILL)
        wait_gone(procs, 5)


def _parents() -> dict[int, int]:
    """PID -> parent PID for every process (this kernel has no /proc/PID/task/*/children)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields:
                out[int(entry.name)] = int(fields[1])
    return out


def pid_namespace_init(ancestor: int) -> int | None:
    """The first descendant of `ancestor` that is PID 1 of its own PID namespace
    (for systemd-nspawn: the container's systemd)."""
    parents = _parents()
    todo = [pid for pid, ppid in parents.items() if ppid == ancestor]
    while todo:
        pid = todo.pop(0)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        nspid = next((ln.split()[1:] for ln in status.splitlines() if ln.startswith("NSpid:")), [])
        if len(nspid) > 1 and nspid[-1] == "1":
            return pid
        todo += [child for child, ppid in parents.items() if ppid == pid]
    return None
