"""`onehci report [SITE | --profile NAME] [--from YYYY-MM] [--to YYYY-MM] [--json] [--html FILE]`"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from installer.cli.main_helpers import load_site_or_profile, site_or_profile_options


def render(report):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{report.cluster}: use per month, {report.first} to {report.last}", title_justify="left")
    for heading in ("month", "VMs started", "VM-hours", "CPU-hours", "memory GB-hours"):
        table.add_column(heading, justify="left" if heading == "month" else "right")
    table.add_column("busiest hosts (CPU-hours)")
    for m in report.months:
        busiest = ", ".join(f"{h} ({v:.1f})" for h, v in m.busiest_hosts())
        table.add_row(m.month, str(m.vms_started), f"{m.vm_hours:.1f}", f"{m.cpu_hours:.1f}",
                      f"{m.memory_gb_hours:.1f}", busiest)
    table.add_row("total", str(int(report.total("vms_started"))), f"{report.total('vm_hours'):.1f}",
                  f"{report.total('cpu_hours'):.1f}", f"{report.total('memory_gb_hours'):.1f}", "", style="bold")
    parts = [table]
    c = report.costs
    if c is None:
        from installer.report import ECONOMICS_HINT

        parts.append(Text(ECONOMICS_HINT))
        return Group(*parts)
    parts.append(Text(f"The cloud costs {c.per_year:,.0f} {c.currency} a year, {c.period_cost:,.0f} {c.currency} over "
                      f"this period, for {c.cpu_hours:,.1f} CPU-hours: {c.per_cpu_hour:.4f} {c.currency} per CPU-hour."))
    if c.alternatives:
        compare = Table(title="The same use bought elsewhere", title_justify="left")
        compare.add_column("")
        compare.add_column(f"{c.currency} a year", justify="right")
        compare.add_column(f"{c.currency} per CPU-hour", justify="right")
        compare.add_row("this cloud", f"{c.per_year:,.0f}", f"{c.per_cpu_hour:.4f}", style="bold")
        for a in c.alternatives:
            compare.add_row(a["name"], f"{a['per_year']:,.0f}", f"{a['per_cpu_hour']:.4f}")
        parts.append(compare)
    return Group(*parts)


@click.command()
@site_or_profile_options
@click.option("--from", "first", metavar="YYYY-MM", help="First month (default: eleven months before --to).")
@click.option("--to", "last", metavar="YYYY-MM", help="Last month (default: this month).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True),
              help="Also write the report as one self-contained web page with its plots.")
def report(site_path: str | None, profile: str | None, first: str | None, last: str | None, as_json: bool,
           html_file: str | None) -> None:
    """What the cloud was used for, month by month, from OpenNebula's accounting: VMs started,
    VM-hours, CPU-hours, memory, busiest hosts; with the site's `economics:` section, the cost
    per CPU-hour against the alternatives (docs/report.md)."""
    from rich.console import Console

    from installer import report as report_mod
    from installer.plan import make_plan
    from installer.state import write_atomic

    loaded = load_site_or_profile(site_path, profile)
    result = report_mod.gather(loaded, make_plan(loaded.site), first, last)
    if html_file:
        from installer import reportpage

        write_atomic(Path(html_file), reportpage.render(result, dt.date.today().isoformat()).encode())
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        Console(soft_wrap=True, highlight=False).print(render(result))
        if html_file:
            click.echo(f"wrote {html_file}")


COMMANDS = [report]
