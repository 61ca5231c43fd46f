"""Processes a lab test left behind, found in /proc."""

from __future__ import annotations

from pathlib import Path


def our_processes(pids: set[int], *markers: str) -> list[str]:
    """Live processes with one of `pids`, or one of `markers` on their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z" and (int(entry.name) in pids or any(m in cmdline for m in markers)):
            found.append(f"{entry.name}: {cmdline}")
    return found
