"""`onehci report [SITE | --profile NAME] [--from YYYY-MM] [--to YYYY-MM] [--json] [--html FILE]`"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from installer.cli.main_helpers import check_output_directories, load_site_or_profile, site_or_profile_options
from installer.i18n import _, language


def _n(value: float | None, spec: str) -> str:
    """VALUE formatted by SPEC (",.0f", ".4f"...) as the technician's language writes numbers: in
    French, 1 234,5 (a narrow no-break space between thousands, a decimal comma). None (no CPU-hour
    to divide by) is n/a."""
    if value is None:
        return "n/a"
    text = format(value, spec)
    if language() == "fr":
        text = text.replace(",", "\u202f").replace(".", ",")
    return text


def render(report):
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(title=_("{cluster}: use per month, {first} to {last}").format(
        cluster=report.cluster, first=report.first, last=report.last), title_justify="left")
    table.add_column(_("month"), justify="left")
    for heading in (_("VMs started"), _("VM-hours"), _("CPU-hours"), _("memory GB-hours")):
        table.add_column(heading, justify="right")
    table.add_column(_("busiest hosts (CPU-hours)"))
    for m in report.months:
        busiest = escape(", ".join(f"{h} ({_n(v, '.1f')})" for h, v in m.busiest_hosts()))
        table.add_row(m.month, str(m.vms_started), _n(m.vm_hours, ".1f"), _n(m.cpu_hours, ".1f"),
                      _n(m.memory_gb_hours, ".1f"), busiest)
    table.add_row(_("total"), str(int(report.total("vms_started"))), _n(report.total("vm_hours"), ".1f"),
                  _n(report.total("cpu_hours"), ".1f"), _n(report.total("memory_gb_hours"), ".1f"), "",
                  style="bold")
    parts = [table]
    c = report.costs
    if c is None:
        from installer.report import economics_hint

        parts.append(Text(economics_hint()))
        return Group(*parts)
    parts.append(Text(_("The cloud costs {per_year} {currency} a year, {period_cost} {currency} over this period, "
                        "for {cpu_hours} CPU-hours: {per_cpu_hour} {currency} per CPU-hour.").format(
        per_year=_n(c.per_year, ",.0f"), period_cost=_n(c.period_cost, ",.0f"), cpu_hours=_n(c.cpu_hours, ",.1f"),
        per_cpu_hour=_n(c.per_cpu_hour, ".4f"), currency=c.currency)))
    if c.alternatives:
        compare = Table(title=_("The same use bought elsewhere"), title_justify="left")
        compare.add_column("")
        compare.add_column(_("{currency} a year").format(currency=c.currency), justify="right")
        compare.add_column(_("{currency} per CPU-hour").format(currency=c.currency), justify="right")
        compare.add_row(_("this cloud"), _n(c.per_year, ",.0f"), _n(c.per_cpu_hour, ".4f"), style="bold")
        for a in c.alternatives:
            # a name from the site file is text, never rich markup ("[/]" would stop the table)
            compare.add_row(Text(a["name"]), _n(a["per_year"], ",.0f"), _n(a["per_cpu_hour"], ".4f"))
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

    check_output_directories(html_file)
    loaded = load_site_or_profile(site_path, profile)
    result = report_mod.gather(loaded, make_plan(loaded.site), first, last)
    page = None  # made, and the terminal's table shown, before the page is written
    if html_file:
        from installer import reportpage

        page = reportpage.render(result, dt.date.today().isoformat()).encode()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        Console(soft_wrap=True, highlight=False).print(render(result))
    if html_file:
        write_atomic(Path(html_file), page)
        if not as_json:
            click.echo(_("wrote {file}").format(file=html_file))


COMMANDS = [report]
