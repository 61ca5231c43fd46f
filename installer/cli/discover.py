"""`onehci discover`"""

from __future__ import annotations

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def discover(as_json: bool) -> None:
    """List this server's disks and network cards and print its nodes: entry.

    Run it on each server (from the live system) and paste the entry into site.yml.
    """
    import json

    from installer.discover import discover as run_discover

    result = run_discover()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        _print_human(result)


def _contents(disk) -> str:
    """What is on a disk, one line per partition, so data is not wiped by mistake."""
    lines = []
    if disk.fstype or disk.mounts or disk.holders:
        lines.append(_describe("(whole disk)", disk.fstype, disk.label, disk.mounts, disk.holders))
    lines += [_describe(p.name, p.fstype, p.label, p.mounts, p.holders, p.size_human) for p in disk.partitions]
    if lines:
        return "\n".join(lines)
    return "nothing mounted" if "filesystem" in disk.unread else "empty"


def _describe(name, fstype, label, mounts, holders, size="") -> str:
    words = [name, size, fstype or "", f"'{label}'" if label else "", " ".join(mounts)]
    if holders:
        words.append("in " + ",".join(holders))
    return " ".join(w for w in words if w)


def _print_human(result) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(markup=False, highlight=False)

    disks = Table(title=f"Disks (read from {result.source})", title_justify="left")
    for column in ("Disk", "Size", "Kind", "Model", "Name in site.yml", "Contents"):
        disks.add_column(column, overflow="fold")
    for d in result.disks:
        ref = d.ref
        name = ref if isinstance(ref, str) else f"serial {ref['serial']}" if ref else "(none known)"
        disks.add_row(d.name, d.size_human, d.kind, d.model or "?", name, _contents(d))
    console.print(disks)
    if result.skipped:
        by_reason: dict[str, list[str]] = {}
        for s in result.skipped:
            by_reason.setdefault(s.reason, []).append(s.name)
        left_out = "; ".join(f"{reason}: {' '.join(names)}" for reason, names in by_reason.items())
        console.print(f"Left out: {left_out}", soft_wrap=True)
    console.print()

    nics = Table(title="Network cards", title_justify="left")
    for column in ("Card", "MAC", "Link", "Speed", "Driver"):
        nics.add_column(column)
    for n in result.nics:
        speed = f"{n.speed_mbps} Mb/s" if n.speed_mbps else "?"
        nics.add_row(n.name, n.mac or "?", "up" if n.link else "down", speed, n.driver or "?")
    console.print(nics)
    console.print()

    for note in result.notes:
        console.print(f"Note: {note}", soft_wrap=True)
    if result.notes:
        console.print()

    console.print("Paste under nodes: in site.yml", style="bold")
    # Plain echo: the entry must reach the terminal byte for byte, without wrapping.
    click.echo(result.entry, nl=False)


COMMANDS = [discover]
