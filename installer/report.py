"""`onehci report`: the cloud's use per month from OpenNebula's accounting, and, with the site's
`economics:` section, what a CPU-hour costs against the alternatives (docs/report.md)."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from dataclasses import dataclass

from installer import one, usage
from installer.errors import OnehciError
from installer.i18n import _


def economics_hint() -> str:
    """What the report says without the site's `economics:` section, in the technician's language."""
    return _("usage only: add an `economics:` section to the site file (purchase, years; hosting_per_year, "
             "staff_share, staff_cost_per_year and alternatives if you have them) for the cost per CPU-hour; "
             "see docs/report.md")


@dataclass
class Report:
    cluster: str
    first: str
    last: str
    months: list[usage.MonthUsage]
    costs: usage.Costs | None

    def total(self, attribute: str) -> float:
        return sum(getattr(m, attribute) for m in self.months)

    def as_dict(self) -> dict:
        return {"cluster": self.cluster, "from": self.first, "to": self.last,
                "months": [m.as_dict() for m in self.months],
                "total": {"vms_started": int(self.total("vms_started")),
                          "vm_hours": round(self.total("vm_hours"), 4),
                          "cpu_hours": round(self.total("cpu_hours"), 4),
                          "memory_gb_hours": round(self.total("memory_gb_hours"), 4)},
                "costs": self.costs.as_dict() if self.costs else None,
                "hint": None if self.costs else economics_hint()}


def default_period(timezone: str, now: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """The twelve months up to and including the current one, in the site's time zone."""
    today = dt.datetime.fromtimestamp(now, zoneinfo.ZoneInfo(timezone))
    back = today.year * 12 + today.month - 1 - 11
    return (back // 12, back % 12 + 1), (today.year, today.month)


def period_of(timezone: str, first: str | None, last: str | None, now: float) -> list[usage.Month]:
    default_first, default_last = default_period(timezone, now)
    end = usage.parse_month(last, "--to") if last else default_last
    start = usage.parse_month(first, "--from") if first else default_first
    if first is None and last is not None:  # --to alone: the twelve months up to it
        back = end[0] * 12 + end[1] - 1 - 11
        start = (back // 12, back % 12 + 1)
    if start > default_last:  # said before the order of --from and --to, which it makes moot
        raise OnehciError(_("the period starts in the future ({month})").format(month=f"{start[0]}-{start[1]:02d}"))
    return usage.months(start, end, timezone)


def build(site, records: list[usage.Record], period: list[usage.Month], now: int) -> Report:
    """The report of PERIOD from RECORDS; refused when no VM ran in it (nothing to report on)."""
    months = usage.monthly(records, period, now)
    if not any(m.vm_hours > 0 for m in months):
        raise OnehciError(_("no VM ran between {first} and {last} according to OpenNebula's accounting: nothing "
                            "to report (choose another period with --from/--to)").format(
                                first=period[0].name, last=period[-1].name))
    costs = None
    if site.economics is not None:
        costs = usage.costs(site.economics, sum(m.cpu_hours for m in months), usage.elapsed(period, now))
    return Report(site.cluster.name, period[0].name, period[-1].name, months, costs)


def gather(loaded, plan, first: str | None = None, last: str | None = None) -> Report:
    """The report of the site's cloud, read from its OpenNebula frontend."""
    now = int(time.time())
    period = period_of(loaded.site.cluster.timezone, first, last, now)
    client = one.client_for(loaded, plan)
    records = one.accounting(client, period[0].start, min(period[-1].end, now))
    return build(loaded.site, records, period, now)
