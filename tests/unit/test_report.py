"""`onehci report`: the monthly use from OpenNebula's accounting records, the cost per CPU-hour from
the site's `economics:` section, and what the verb refuses."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from pyone import bindings

from installer import one, report, reportpage, sitefile, usage
from installer.cli.main import cli
from installer.errors import OnehciError
from installer.site import Economics
from tests.conftest import BASE_SITE, line_of

DATA = Path(__file__).with_name("data")
PARIS = "Europe/Paris"
HOUR = 3600


def at(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp())


def test_the_dijon_figures_give_0_015_per_cpu_hour():
    """The academy's slide: 120,000 EUR over five years, 135,000 CPU-hours a month."""
    economics = Economics(purchase=120000, years=5, alternatives=[{"name": "bare metal rented", "per_year": 58000},
                                                                   {"name": "VMs on demand", "per_year": 126000}])
    costs = usage.costs(economics, cpu_hours=135000 * 12, seconds=usage.YEAR)
    assert costs.per_year == 24000
    assert round(costs.per_cpu_hour, 3) == 0.015
    assert [a["per_cpu_hour"] for a in costs.alternatives] == [0.0358, 0.0778]


def test_hosting_and_staff_time_count_in_the_yearly_cost():
    economics = Economics(purchase=100000, years=5, hosting_per_year=3000, staff_share=0.05, staff_cost_per_year=60000)
    assert usage.yearly_cost(economics) == 20000 + 3000 + 3000


def test_a_run_across_a_month_boundary_is_split_in_the_sites_time_zone():
    period = usage.months((2026, 9), (2026, 10), PARIS)
    # from 23:00 to 01:00 Paris time across September 30th: one hour in each month
    run = usage.Record(vm=1, seq=0, host="n1", start=at("2026-09-30T23:00:00+02:00"),
                       end=at("2026-10-01T01:00:00+02:00"), cpu=2, memory_mib=1024)
    september, october = usage.monthly([run], period, now=at("2026-11-01T00:00:00+01:00"))
    assert (september.vm_hours, september.cpu_hours, september.memory_gb_hours) == (1, 2, 1)
    assert (october.vm_hours, october.cpu_hours) == (1, 2)
    assert (september.vms_started, october.vms_started) == (1, 0)


def test_a_vm_still_running_counts_up_to_now_and_one_that_never_ran_not_at_all():
    period = usage.months((2026, 10), (2026, 10), PARIS)
    now = at("2026-10-02T12:00:00+02:00")
    running = usage.Record(vm=1, seq=0, host="n1", start=at("2026-10-02T09:00:00+02:00"), end=0, cpu=1,
                           memory_mib=512)
    never = usage.Record(vm=2, seq=0, host="n2", start=0, end=0, cpu=4, memory_mib=512)
    (october,) = usage.monthly([running, never], period, now)
    assert (october.vm_hours, october.vms_started) == (3, 1)
    assert october.busiest_hosts() == [("n1", 3)]


def test_a_migration_is_no_new_start_and_the_busiest_host_comes_first():
    period = usage.months((2026, 10), (2026, 10), PARIS)
    now = at("2026-11-01T00:00:00+01:00")
    first = usage.Record(vm=1, seq=0, host="n1", start=at("2026-10-05T10:00:00+02:00"),
                         end=at("2026-10-05T11:00:00+02:00"), cpu=1, memory_mib=1024)
    moved = usage.Record(vm=1, seq=1, host="n2", start=at("2026-10-05T11:00:00+02:00"),
                         end=at("2026-10-05T15:00:00+02:00"), cpu=1, memory_mib=1024)
    (october,) = usage.monthly([first, moved], period, now)
    assert october.vms_started == 1
    assert october.busiest_hosts() == [("n2", 4), ("n1", 1)]


def test_a_recorded_accounting_document_reads_as_records():
    """OpenNebula's answer to one.vmpool.accounting (History::to_xml with the VM as stored), parsed by
    pyone's own bindings as a real call would be."""

    class Pool:
        def accounting(self, who, start, end):
            assert (who, start, end) == (one.ALL_VMS, 10, 20)
            return bindings.parseString((DATA / "accounting-two-vms.xml").read_bytes())

    class Client:
        vmpool = Pool()

    records = one.accounting(Client(), 10, 20)
    assert [(r.vm, r.seq, r.host, r.cpu, r.memory_mib) for r in records] == [
        (7, 0, "n1", 2, 2048), (7, 1, "n2", 2, 2048), (8, 0, "n1", 0.5, 512)]
    assert records[0].end - records[0].start == 2 * HOUR
    assert records[1].end == 0  # still running
    period = usage.months((2026, 10), (2026, 10), PARIS)
    (october,) = usage.monthly(records, period, now=records[1].start + HOUR)
    assert (october.vms_started, october.vm_hours, october.cpu_hours) == (2, 5, 2 * 2 + 2 * 1 + 0.5 * 2)


def test_an_empty_period_is_refused(base_loaded):
    period = usage.months((2026, 10), (2026, 11), PARIS)
    never = usage.Record(vm=1, seq=0, host="n1", start=0, end=0, cpu=1, memory_mib=512)
    with pytest.raises(OnehciError, match="no VM ran between 2026-10 and 2026-11"):
        report.build(base_loaded.site, [never], period, now=at("2026-12-01T00:00:00+01:00"))


@pytest.mark.parametrize("first, last, message", [
    ("2026-13", None, "--from '2026-13' is not a month like 2026-09"),
    (None, "sept", "--to 'sept' is not a month like 2026-09"),
    ("2026-10", "2026-09", "the period ends (2026-09) before it starts (2026-10)"),
    ("2099-01", "2099-02", "the period starts in the future (2099-01)"),
    ("2027-01", None, "the period starts in the future (2027-01)"),
])
def test_a_wrong_period_is_one_line(first, last, message):
    with pytest.raises(OnehciError) as caught:
        report.period_of(PARIS, first, last, now=at("2026-12-04T12:00:00+01:00"))
    assert str(caught.value) == message


def test_the_default_period_is_the_last_twelve_months():
    period = report.period_of(PARIS, None, None, now=at("2026-12-04T12:00:00+01:00"))
    assert (period[0].name, period[-1].name, len(period)) == ("2026-01", "2026-12", 12)
    period = report.period_of(PARIS, None, "2026-03", now=at("2026-12-04T12:00:00+01:00"))
    assert (period[0].name, period[-1].name) == ("2025-04", "2026-03")


ECONOMICS = """economics:
  currency: EUR
  purchase: 120000
  years: 5
  alternatives:
    - {name: "Bare metal & co <rented>", per_year: 58000}
"""


@pytest.mark.parametrize("section, field, message", [
    ("economics:\n  purchase: -5\n  years: 5\n", "economics.purchase", "greater than 0"),
    ("economics:\n  years: 5\n", "economics.purchase", "required"),
    ("economics:\n  purchase: 1000\n  years: 5\n  staff_share: 1.5\n", "economics.staff_share", "less than or equal to 1"),
    ("economics:\n  purchase: 1000\n  years: 5\n  currency: euro\n", "economics.currency", "currency code like EUR"),
])
def test_a_wrong_economics_value_is_one_line_with_its_place(write_site, section, field, message):
    text = BASE_SITE.replace("nodes:\n", section + "nodes:\n", 1)
    path = write_site(text)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    first = result.output.splitlines()[0]
    assert first.startswith(f"{path}:") and field in first and message in first, result.output
    assert int(first.split(":")[1].split()[0]) >= line_of(text, "economics:")


def _report(write_site, economics: bool) -> report.Report:
    site = sitefile.load(write_site(BASE_SITE.replace("nodes:\n", ECONOMICS + "nodes:\n", 1) if economics
                                    else BASE_SITE)).site
    period = usage.months((2026, 9), (2026, 10), PARIS)
    runs = [usage.Record(vm=i, seq=0, host=f"n{i % 2 + 1}", start=at("2026-09-10T10:00:00+02:00") + i * 86400,
                         end=at("2026-09-10T20:00:00+02:00") + i * 86400 * 10, cpu=1, memory_mib=1024)
            for i in range(3)]
    return report.build(site, runs, period, now=at("2026-11-15T00:00:00+01:00"))


def test_without_economics_the_report_is_usage_and_says_what_to_add(write_site):
    data = _report(write_site, economics=False).as_dict()
    assert data["costs"] is None and "economics:" in data["hint"]
    assert data["total"]["vms_started"] == 3 and data["total"]["cpu_hours"] > 0


def test_the_page_is_self_contained_with_both_plots_and_escaped_names(write_site):
    page = reportpage.render(_report(write_site, economics=True), "2026-12-04")
    assert page.count("<svg") == 2
    assert 'id="cpu-hours"' in page and 'id="cost"' in page
    assert "Bare metal &amp; co &lt;rented&gt;" in page and "<rented>" not in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched from elsewhere


def test_a_site_never_deployed_is_one_line_and_nothing_is_written(write_site, tmp_path, monkeypatch):
    monkeypatch.delenv("ONEHCI_STATE_DIR", raising=False)
    path = write_site()
    page = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(path), "--html", str(page)])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: no oneadmin password in ") and line.endswith("deploy the site first (onehci deploy)")
    assert not page.exists()


def test_accounting_unreachable_is_one_line_and_nothing_is_written(write_site, tmp_path, monkeypatch):
    """The API's address moved to a port of this machine where nothing listens (the site's own
    addresses are not on this machine)."""
    import socket

    from installer import state

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(one, "api_url", lambda plan: f"http://127.0.0.1:{port}/RPC2")
    monkeypatch.delenv("ONEHCI_STATE_DIR", raising=False)
    path = write_site()
    loaded = sitefile.load(path)
    password = state.oneadmin_password_file(loaded.path)
    password.parent.mkdir(parents=True, exist_ok=True)
    password.write_text("not-the-real-one\n")
    page = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(path), "--json", "--html", str(page)])
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert "unreachable" in line and "not-the-real-one" not in line
    assert not page.exists()


def test_names_from_the_site_are_text_in_the_terminal_too(write_site):
    """rich would read "[/]" as markup and stop; the name is printed as it is written."""
    from rich.console import Console

    from installer.cli.report import render

    site = sitefile.load(write_site(BASE_SITE.replace("nodes:\n", ECONOMICS.replace(
        "Bare metal & co <rented>", "[/]bare [red]metal") + "nodes:\n", 1))).site
    period = usage.months((2026, 9), (2026, 9), PARIS)
    run = usage.Record(vm=1, seq=0, host="n1", start=at("2026-09-10T10:00:00+02:00"),
                       end=at("2026-09-10T20:00:00+02:00"), cpu=1, memory_mib=1024)
    console = Console(width=200, record=True)
    console.print(render(report.build(site, [run], period, now=at("2026-10-15T00:00:00+02:00"))))
    assert "[/]bare [red]metal" in console.export_text()


def test_vms_without_cpu_give_no_cost_per_cpu_hour_and_no_crash(write_site):
    """A record whose VM template has no readable CPU: the use is there, the cost per CPU-hour is n/a."""
    from rich.console import Console

    from installer.cli.report import render

    site = sitefile.load(write_site(BASE_SITE.replace("nodes:\n", ECONOMICS + "nodes:\n", 1))).site
    period = usage.months((2026, 9), (2026, 9), PARIS)
    run = usage.Record(vm=1, seq=0, host="n1", start=at("2026-09-10T10:00:00+02:00"),
                       end=at("2026-09-10T20:00:00+02:00"), cpu=0, memory_mib=1024)
    built = report.build(site, [run], period, now=at("2026-10-15T00:00:00+02:00"))
    assert built.costs.per_cpu_hour is None and built.as_dict()["total"]["vm_hours"] == 10
    console = Console(width=200, record=True)
    console.print(render(built))
    assert "n/a EUR per CPU-hour" in console.export_text()
    page = reportpage.render(built, "2026-12-04")
    assert page.count("<svg") == 1 and "n/a" in page


def test_a_page_whose_directory_is_missing_is_refused_before_anything(write_site):
    result = CliRunner().invoke(cli, ["report", str(write_site()), "--html", "/nonexistent-dir/report.html"])
    assert result.exit_code == 1
    assert result.output.strip() == ("error: cannot write /nonexistent-dir/report.html: the directory "
                                     "/nonexistent-dir does not exist")


def test_the_accounting_recorded_from_the_labs_opennebula_reads_and_adds_up():
    """tests/unit/data/accounting-lab.xml: one.vmpool.accounting's answer from the lab's OpenNebula
    7.0.2 after tests/lab/test_opennebula.py's VMs (saved by that test). onehci's records against the
    standard library's reading of the same document, and the month's sums against them."""
    import xml.etree.ElementTree as ET

    raw = (DATA / "accounting-lab.xml").read_bytes()

    class Pool:
        def accounting(self, who, start, end):
            return bindings.parseString(raw)

    class Client:
        vmpool = Pool()

    records = one.accounting(Client(), -1, -1)
    history = list(ET.fromstring(raw).iter("HISTORY"))
    assert len(records) == len(history) > 5
    expected = [(int(h.findtext("OID")), int(h.findtext("SEQ")), h.findtext("HOSTNAME"), int(h.findtext("RSTIME")),
                 int(h.findtext("RETIME")) or int(h.findtext("ETIME")), float(h.findtext("VM/TEMPLATE/CPU")),
                 float(h.findtext("VM/TEMPLATE/MEMORY"))) for h in history]
    assert [(r.vm, r.seq, r.host, r.start, r.end, r.cpu, r.memory_mib) for r in records] == expected
    assert all(r.end > 0 for r in records)  # every VM of the lab test was gone when it was saved
    month = next(m for m in usage.months((2026, 12), (2026, 12), PARIS))
    (december,) = usage.monthly(records, [month], now=max(r.end for r in records) + 1)
    ran = [r for r in records if r.start > 0]
    assert december.vm_hours == pytest.approx(sum(r.end - r.start for r in ran) / HOUR)
    assert december.cpu_hours == pytest.approx(sum((r.end - r.start) * r.cpu for r in ran) / HOUR)
    assert december.vms_started == len({r.vm for r in ran if r.seq == 0})
    assert {r.host for r in ran} == {"lab1", "lab2", "lab3"}
