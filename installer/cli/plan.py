"""`onehci plan SITE`"""

from __future__ import annotations

import json

import click

from installer.cli.main_helpers import load_site_or_report, site_argument
from installer.errors import Reported


@click.command()
@site_argument
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON on stdout.")
@click.option("--write", is_flag=True, help="Write allocated addresses into the site file (comments kept).")
def plan(site_path: str, as_json: bool, write: bool) -> None:
    """Show the IP plan and the MooseFS and OpenNebula layout of a site."""
    from installer import sitefile
    from installer.plan import make_plan

    loaded, problems = load_site_or_report(site_path, as_json=as_json)
    if loaded is None:
        if as_json:
            click.echo(json.dumps({"file": site_path, "valid": False,
                                   "errors": [p.as_dict() for p in problems]}, indent=2))
        raise Reported()
    the_plan = make_plan(loaded.site, [p.render() for p in problems])
    written: list[str] = []
    if write:
        allocated = {n.hostname: n.ip for n in the_plan.nodes if n.ip_allocated}
        written = sitefile.write_addresses(loaded.path, allocated)
        the_plan = make_plan(sitefile.load(loaded.path).site, the_plan.warnings)
    if as_json:
        data = the_plan.as_dict()
        data["written"] = written
        click.echo(json.dumps(data, indent=2))
        return
    _print_plan(the_plan)
    if write:
        click.echo(f"wrote addresses of {', '.join(written)} into {site_path}" if written
                   else f"{site_path} already pins every address; nothing written", err=True)


def _disk(d) -> str:
    return d if isinstance(d, str) else f"serial {d['serial']}"


def _print_plan(p) -> None:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[bold]Cluster {p.cluster}[/] ({p.domain})\n")
    rows = [("node", "MAC", "IP", "boot", "roles", "OS disk", "chunk disks")]
    for n in p.nodes:
        rows.append((n.hostname, n.mac, f"{n.ip}{' *' if n.ip_allocated else ''}", n.boot, ",".join(n.roles),
                     _disk(n.os_disk), ", ".join(_disk(d) for d in n.chunk_disks) or "-"))
    # Plain aligned columns: a table of a thousand nodes prints at once and never cuts a disk name.
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if any(n.ip_allocated for n in p.nodes):
        console.print("* allocated by the plan; run `onehci plan --write SITE` to pin it in the site file")
    m, v, b = p.networks.management, p.networks.vms, p.networks.bootstrap
    console.print(f"\n[bold]Networks[/]\n  management {m.cidr} gateway {m.gateway} dns {', '.join(m.dns)} "
                  f"dhcp {m.dhcp} (node pool {m.pool})\n"
                  f"  vms        {v.cidr} on bridge {v.bridge}, VM addresses {v.range}\n"
                  f"  bootstrap  {b.address} on {b.interface}, mirror {b.mirror}"
                  f"{', apt-cacher-ng on the bootstrap address' if b.apt_proxy else ''}")
    mfs, one = p.moosefs, p.opennebula
    console.print(f"\n[bold]MooseFS[/]\n  master       {mfs.master} ({mfs.master_ip})\n"
                  f"  metaloggers  {', '.join(mfs.metaloggers) or '-'}\n"
                  f"  chunkservers {', '.join(mfs.chunkservers)}\n"
                  f"  goal         {mfs.goal} copies\n  mounted on   {', '.join(mfs.clients)} at {mfs.mount}")
    console.print(f"\n[bold]OpenNebula[/]\n  frontend     {one.frontend} ({one.frontend_ip})\n"
                  f"  KVM hosts    {', '.join(one.hosts) or '-'} in cluster {one.cluster}\n"
                  f"  datastores   system + image, TM_MAD={one.datastores['tm_mad']} on {one.datastores['path']}\n"
                  f"  network      bridged on {one.network['bridge']}, {one.network['range']}")


COMMANDS = [plan]
