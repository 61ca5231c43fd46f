"""What the cloud was used for, month by month, and what that use cost: the arithmetic of
`onehci report`, from OpenNebula's accounting records (one per stretch a VM ran on one host).

A record's running time is RSTIME..RETIME (RETIME 0: still running, counted up to now). CPU-hours
use the VM's CPU (the share of physical cores OpenNebula reserves for it, what the hosts really
give up), not VCPU. Months are the site's time zone's calendar months.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field

from installer.errors import OnehciError
from installer.i18n import _

HOUR = 3600.0
YEAR = 365.25 * 24 * HOUR
BUSIEST = 3  # hosts named per month
_MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True)
class Record:
    """One stretch of one VM on one host (an OpenNebula history record)."""

    vm: int
    seq: int  # 0: the VM's first placement
    host: str
    start: int  # when it started running, epoch seconds; 0: never ran
    end: int  # when it stopped running; 0: still running
    cpu: float
    memory_mib: float


@dataclass(frozen=True)
class Month:
    name: str  # YYYY-MM
    start: int
    end: int


@dataclass
class MonthUsage:
    month: str
    vms_started: int = 0
    vm_hours: float = 0.0
    cpu_hours: float = 0.0
    memory_gb_hours: float = 0.0
    host_cpu_hours: dict[str, float] = field(default_factory=dict)

    def busiest_hosts(self) -> list[tuple[str, float]]:
        ranked = sorted(self.host_cpu_hours.items(), key=lambda kv: (-kv[1], kv[0]))
        return [(h, round(v, 4)) for h, v in ranked[:BUSIEST] if v > 0]

    def as_dict(self) -> dict:
        return {"month": self.month, "vms_started": self.vms_started, "vm_hours": round(self.vm_hours, 4),
                "cpu_hours": round(self.cpu_hours, 4), "memory_gb_hours": round(self.memory_gb_hours, 4),
                "busiest_hosts": [{"host": h, "cpu_hours": v} for h, v in self.busiest_hosts()]}


def parse_month(text: str, what: str) -> tuple[int, int]:
    match = _MONTH.fullmatch(text or "")
    if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1970:
        raise OnehciError(_("{option} '{text}' is not a month like 2026-09").format(option=what, text=text))
    return int(match[1]), int(match[2])


def months(first: tuple[int, int], last: tuple[int, int], timezone: str) -> list[Month]:
    """Every calendar month from FIRST to LAST (year, month), with its bounds in epoch seconds."""
    if last < first:
        raise OnehciError(_("the period ends ({last}) before it starts ({first})").format(
            last=f"{last[0]}-{last[1]:02d}", first=f"{first[0]}-{first[1]:02d}"))
    zone = zoneinfo.ZoneInfo(timezone)
    out = []
    year, month = first
    while (year, month) <= last:
        nxt = (year + month // 12, month % 12 + 1)
        start = dt.datetime(year, month, 1, tzinfo=zone)
        end = dt.datetime(nxt[0], nxt[1], 1, tzinfo=zone)
        out.append(Month(f"{year}-{month:02d}", int(start.timestamp()), int(end.timestamp())))
        year, month = nxt
    return out


def monthly(records: list[Record], period: list[Month], now: int) -> list[MonthUsage]:
    """The use of each month of PERIOD: a record counts for the part of its run inside the month."""
    out = []
    for month in period:
        usage = MonthUsage(month.name)
        hosts: dict[str, float] = defaultdict(float)
        for r in records:
            if r.start <= 0:
                continue
            end = r.end if r.end > 0 else now
            seconds = max(0, min(end, month.end, now) - max(r.start, month.start))
            if r.seq == 0 and month.start <= r.start < month.end:
                usage.vms_started += 1
            hours = seconds / HOUR
            usage.vm_hours += hours
            usage.cpu_hours += hours * r.cpu
            usage.memory_gb_hours += hours * r.memory_mib / 1024
            hosts[r.host] += hours * r.cpu
        usage.host_cpu_hours = dict(hosts)
        out.append(usage)
    return out


def elapsed(period: list[Month], now: int) -> float:
    """Seconds of PERIOD that have passed by NOW: the cost of a month not over yet is counted so far."""
    return float(sum(max(0, min(m.end, now) - m.start) for m in period))


@dataclass(frozen=True)
class Costs:
    currency: str
    per_year: float  # what the cloud costs a year: the servers spread over their years, hosting, staff
    period_cost: float
    cpu_hours: float
    per_cpu_hour: float | None  # None: no CPU-hour in the period
    alternatives: list[dict]  # name, per_year, and the same use bought there per CPU-hour

    def as_dict(self) -> dict:
        return {"currency": self.currency, "per_year": round(self.per_year, 2),
                "period_cost": round(self.period_cost, 2), "cpu_hours": round(self.cpu_hours, 4),
                "per_cpu_hour": None if self.per_cpu_hour is None else round(self.per_cpu_hour, 4),
                "alternatives": self.alternatives}


def yearly_cost(economics) -> float:
    return (economics.purchase / economics.years + economics.hosting_per_year
            + economics.staff_share * economics.staff_cost_per_year)


def costs(economics, cpu_hours: float, seconds: float) -> Costs:
    """The cloud's cost per CPU-hour over a period of SECONDS in which CPU_HOURS were used, and what
    each alternative (a yearly price for the same capacity) would have cost per CPU-hour of that use."""
    per_year = yearly_cost(economics)
    share = seconds / YEAR
    period_cost = per_year * share
    used = cpu_hours > 0
    alternatives = [{"name": a.name, "per_year": round(a.per_year, 2),
                     "per_cpu_hour": round(a.per_year * share / cpu_hours, 4) if used else None}
                    for a in economics.alternatives]
    return Costs(economics.currency, per_year, period_cost, cpu_hours,
                 period_cost / cpu_hours if used else None, alternatives)
