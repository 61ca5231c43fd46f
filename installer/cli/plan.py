"""`onehci plan SITE`"""

from __future__ import annotations

import json

import click

from installer.cli.main_helpers import load_site_or_report, site_argument
from installer.errors import Reported
from installer.i18n import _, ngettext


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
        click.echo(_("wrote addresses of {nodes} into {site}").format(nodes=", ".join(written), site=site_path)
                   if written else _("{site} already pins every address; nothing written").format(site=site_path),
                   err=True)


def _disk(d) -> str:
    return d if isinstance(d, str) else f"serial {d['serial']}"


def _print_plan(p) -> None:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    heading = _("Cluster {cluster}").format(cluster=p.cluster)
    console.print(f"[bold]{heading}[/] ({p.domain})\n")
    rows = [(_("node"), "MAC", "IP", _("boot"), _("roles"), _("OS disk"), _("chunk disks"))]
    for n in p.nodes:
        rows.append((n.hostname, n.mac, f"{n.ip}{' *' if n.ip_allocated else ''}", n.boot, ",".join(n.roles),
                     _disk(n.os_disk), ", ".join(_disk(d) for d in n.chunk_disks) or "-"))
    # Plain aligned columns: a table of a thousand nodes prints at once and never cuts a disk name.
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if any(n.ip_allocated for n in p.nodes):
        console.print(_("* allocated by the plan; run `onehci plan --write SITE` to pin it in the site file"))
    m, v, b = p.networks.management, p.networks.vms, p.networks.bootstrap
    # the networks keep the site file's names (management, vms, bootstrap): only the words after them change
    mirror = (_("{address} on {interface}, mirror {mirror}, apt-cacher-ng on the bootstrap address") if b.apt_proxy
              else _("{address} on {interface}, mirror {mirror}"))
    networks = [("management", _("{cidr} gateway {gateway} dns {dns} dhcp {dhcp} (node pool {pool})").format(
                     cidr=m.cidr, gateway=m.gateway, dns=", ".join(m.dns), dhcp=m.dhcp, pool=m.pool)),
                ("vms", _("{cidr} on bridge {bridge}, VM addresses {range}").format(
                    cidr=v.cidr, bridge=v.bridge, range=v.range)),
                ("bootstrap", mirror.format(address=b.address, interface=b.interface, mirror=b.mirror))]
    heading = _("Networks")
    console.print(f"\n[bold]{heading}[/]\n" + "\n".join(f"  {name:<10} {text}" for name, text in networks))
    mfs, one = p.moosefs, p.opennebula
    moosefs = [(_("master"), f"{mfs.master} ({mfs.master_ip})"),
               (_("metaloggers"), ", ".join(mfs.metaloggers) or "-"),
               (_("chunkservers"), ", ".join(mfs.chunkservers)),
               # English says "copies" even for goal 1 (its output is kept as it was); French agrees
               (_("goal"), ngettext("{goal} copies", "{goal} copies", mfs.goal).format(goal=mfs.goal)),
               (_("mounted on"), _("{nodes} at {mount}").format(nodes=", ".join(mfs.clients), mount=mfs.mount))]
    opennebula = [(_("frontend"), f"{one.frontend} ({one.frontend_ip})"),
                  (_("KVM hosts"), _("{hosts} in cluster {cluster}").format(hosts=", ".join(one.hosts) or "-",
                                                                           cluster=one.cluster)),
                  (_("datastores"), _("system + image, TM_MAD={tm_mad} on {path}").format(
                      tm_mad=one.datastores["tm_mad"], path=one.datastores["path"])),
                  (_("network"), _("bridged on {bridge}, {range}").format(
                      bridge=one.network["bridge"], range=one.network["range"]))]
    # labels in one column, as wide as the longest label of either section (12 in English)
    width = max(12, *(len(label) for label, _text in moosefs + opennebula))
    for title, rows in (("MooseFS", moosefs), ("OpenNebula", opennebula)):
        console.print(f"\n[bold]{title}[/]\n" + "\n".join(f"  {label:<{width}} {text}" for label, text in rows))


COMMANDS = [plan]
