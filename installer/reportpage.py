"""`onehci report --html`: one self-contained page (inline CSS and SVG plots, nothing fetched) that
a technician can mail to the management."""

from __future__ import annotations

import io

import jinja2
from markupsafe import Markup

from installer.i18n import english

PAGE = jinja2.Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ r.cluster }}: use and cost, {{ r.first }} to {{ r.last }}</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 60em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: .3em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.note { color: #555; }
figure { margin: 1em 0; }
</style></head><body>
<h1>{{ r.cluster }}: use and cost</h1>
<p class="note">From OpenNebula's accounting, {{ r.first }} to {{ r.last }}; made by onehci report on {{ made }}.</p>
<h2>Use per month</h2>
<table><tr><th>Month</th><th>VMs started</th><th>VM-hours</th><th>CPU-hours</th><th>Memory GB-hours</th>
<th>Busiest hosts (CPU-hours)</th></tr>
{% for m in d.months %}<tr><td>{{ m.month }}</td><td>{{ m.vms_started }}</td><td>{{ "%.1f"|format(m.vm_hours) }}</td>
<td>{{ "%.1f"|format(m.cpu_hours) }}</td><td>{{ "%.1f"|format(m.memory_gb_hours) }}</td>
<td>{% for h in m.busiest_hosts %}{{ h.host }} ({{ "%.1f"|format(h.cpu_hours) }}){% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
{% endfor %}<tr><th>Total</th><th>{{ d.total.vms_started }}</th><th>{{ "%.1f"|format(d.total.vm_hours) }}</th>
<th>{{ "%.1f"|format(d.total.cpu_hours) }}</th><th>{{ "%.1f"|format(d.total.memory_gb_hours) }}</th><th></th></tr>
</table>
<figure id="cpu-hours">{{ cpu_plot }}<figcaption>CPU-hours per month</figcaption></figure>
<h2>Cost</h2>
{% if c %}
<p>The cloud costs {{ money(c.per_year) }} {{ c.currency }} a year (servers over their years of use, hosting and
staff time), {{ money(c.period_cost) }} {{ c.currency }} over this period, for {{ "%.1f"|format(c.cpu_hours) }} CPU-hours:
<strong>{{ four(c.per_cpu_hour) }} {{ c.currency }} per CPU-hour</strong>.</p>
{% if c.alternatives %}<table><tr><th>The same use bought elsewhere</th><th>{{ c.currency }} a year</th>
<th>{{ c.currency }} per CPU-hour</th></tr>
<tr><td>This cloud</td><td>{{ money(c.per_year) }}</td><td>{{ four(c.per_cpu_hour) }}</td></tr>
{% for a in c.alternatives %}<tr><td>{{ a.name }}</td><td>{{ money(a.per_year) }}</td>
<td>{{ four(a.per_cpu_hour) }}</td></tr>{% endfor %}</table>
{% if cost_plot %}<figure id="cost">{{ cost_plot }}<figcaption>Cost per CPU-hour against the alternatives</figcaption></figure>{% endif %}
{% endif %}
{% else %}<p class="note">{{ d.hint }}</p>{% endif %}
</body></html>
""", autoescape=True)


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # without the XML prolog and doctype, to sit inside the page


def _plots(data: dict) -> tuple[str, str]:
    import matplotlib

    matplotlib.use("Agg")  # no display: the plots are drawn into the page
    matplotlib.rcParams["text.parse_math"] = False  # a '$' in a name from the site file is a dollar sign
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: searchable, and small
    from matplotlib.figure import Figure

    cpu = Figure(figsize=(8, 3.2))
    axes = cpu.subplots()
    axes.bar([m["month"] for m in data["months"]], [m["cpu_hours"] for m in data["months"]], color="#3b6ea5")
    axes.set_ylabel("CPU-hours")
    axes.tick_params(axis="x", labelrotation=45)
    cost = ""
    costs = data["costs"]
    if costs and costs["alternatives"] and costs["per_cpu_hour"] is not None:
        figure = Figure(figsize=(8, 0.6 + 0.5 * (1 + len(costs["alternatives"]))))
        axes = figure.subplots()
        names = ["This cloud"] + [a["name"] for a in costs["alternatives"]]
        values = [costs["per_cpu_hour"]] + [a["per_cpu_hour"] for a in costs["alternatives"]]
        axes.barh(names, values, color=["#2e8b57"] + ["#999999"] * len(costs["alternatives"]))
        axes.invert_yaxis()
        axes.set_xlabel(f"{costs['currency']} per CPU-hour")
        cost = _svg(figure)
    return _svg(cpu), cost


def render(report, made: str) -> str:
    """The page of REPORT (made on MADE, an ISO date), in English whatever the system's language."""
    with english():  # its hint too: the page is one English document
        data = report.as_dict()
    cpu_plot, cost_plot = _plots(data)
    # matplotlib's own SVG: it escapes the texts it draws (alternative names from the site file)
    return PAGE.render(r=report, d=data, c=data["costs"], made=made, cpu_plot=Markup(cpu_plot),
                       cost_plot=Markup(cost_plot), money=lambda v: f"{v:,.0f}",
                       four=lambda v: "n/a" if v is None else f"{v:.4f}")
