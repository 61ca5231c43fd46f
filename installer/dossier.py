"""`onehci dossier`: the site on paper for the server room: the cluster at a glance, the IP plan,
the network drawn, one page per node with what to do when it fails, the day-2 commands, and the
date and checksum of the site file it was made from. It holds nothing secret: no password hash,
no key, only what a technician reads off a label or a screen."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from installer import __version__
from installer.image import file_sha256

ROLE_NAMES = {"frontend": "OpenNebula frontend", "kvm": "KVM host", "mfs_master": "MooseFS master",
              "mfs_chunkserver": "MooseFS chunkserver", "mfs_metalogger": "MooseFS metalogger"}

# the network drawing: rows of nodes, each hanging from the management network above it and, for a
# KVM host, standing on the VM bridge below it
BOX_W, BOX_H, GAP, MARGIN, PER_ROW, ROW_H = 150, 74, 20, 20, 5, 170
SHORT_ROLES = {"frontend": "frontend", "kvm": "kvm", "mfs_master": "master", "mfs_chunkserver": "chunks",
               "mfs_metalogger": "metalogger"}


def _disk(disk) -> str:
    if isinstance(disk, dict):
        return f"serial {disk['serial']}"
    return str(disk)


def when_it_fails(node, plan, site: str) -> list[str]:
    """What the technician runs when NODE fails, in order, as the day-2 verbs allow it
    (docs/operations/): `onehci rebuild` refuses the frontend, and the MooseFS master until the
    master has moved to a metalogger."""
    steps = []
    others = [m for m in plan.moosefs.metaloggers if m != node.hostname]
    rebuild = f"`onehci rebuild {node.hostname} {site}`"
    if node.has("mfs_master"):
        steps.append(f"The MooseFS master is here. If only its process died: `onehci recover-master {site}`.")
        if others:
            steps.append(f"If the server is lost: stop it, then `onehci recover-master {site} --from {others[0]}` "
                         "(that metalogger becomes the master).")
        else:
            steps.append("No metalogger on another node holds a copy of its metadata: keep its disks.")
    if node.has("frontend"):
        steps.append("The OpenNebula frontend is here: while it is down, running VMs keep running but none can be "
                     "started, stopped or moved. onehci does not rebuild a frontend (oned's database and oneadmin's "
                     "keys cannot be backed up and restored yet): keep its disks and call for help.")
    elif not node.has("mfs_master") or others:
        when = "Once the master has moved, reinstall it" if node.has("mfs_master") else "Reinstall it"
        steps.append(f"{when} (new disk, new board with the same MAC, or a broken system): {rebuild}. It refuses, "
                     "and changes nothing, while a chunk has no copy left or while fewer than storage.goal "
                     "chunkservers would remain.")
    steps.append(f"Then check: `onehci status {site}`")
    return steps


def with_commands(step: str) -> Markup:
    """STEP escaped, its `commands` set in unbreakable monospace."""
    parts = str(escape(step)).split("`")
    return Markup("".join(f'<code>{p}</code>' if i % 2 else p for i, p in enumerate(parts)))


def diagram(plan) -> str:
    """The network as SVG: the management network, each node with its address, MAC and roles, and
    the VM bridge under every KVM host. Texts are escaped by the template."""
    rows = [plan.nodes[i:i + PER_ROW] for i in range(0, len(plan.nodes), PER_ROW)]
    width = 2 * MARGIN + PER_ROW * (BOX_W + GAP) - GAP
    return DIAGRAM.render(plan=plan, rows=rows, width=width, height=60 + len(rows) * ROW_H, box_w=BOX_W,
                          box_h=BOX_H, gap=GAP, margin=MARGIN, row_h=ROW_H, short=SHORT_ROLES)


DIAGRAM = jinja2.Template("""<svg xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {{ width }} {{ height }}"
 font-family="DejaVu Sans, sans-serif" font-size="11">
<text x="{{ margin }}" y="14" fill="#3b6ea5">management {{ plan.networks.management.cidr }}, gateway
 {{ plan.networks.management.gateway }}, install server {{ plan.networks.bootstrap.address }}</text>
<text x="{{ margin }}" y="{{ height - 8 }}" fill="#2e8b57">VMs: bridge {{ plan.networks.vms.bridge }}, {{ plan.networks.vms.cidr }},
 {{ plan.networks.vms.range }}</text>
{% for row in rows %}{% set top = 24 + loop.index0 * row_h %}
<rect x="{{ margin }}" y="{{ top }}" width="{{ width - 2 * margin }}" height="6" fill="#3b6ea5"/>
{% for n in row %}{% set x = margin + loop.index0 * (box_w + gap) %}
<line x1="{{ x + box_w / 2 }}" y1="{{ top + 6 }}" x2="{{ x + box_w / 2 }}" y2="{{ top + 40 }}" stroke="#3b6ea5" stroke-width="2"/>
<rect x="{{ x }}" y="{{ top + 40 }}" width="{{ box_w }}" height="{{ box_h }}" rx="6" fill="#f2f2f2" stroke="#444"/>
<text x="{{ x + 8 }}" y="{{ top + 58 }}" font-weight="bold">{{ n.hostname }}</text>
<text x="{{ x + 8 }}" y="{{ top + 74 }}">{{ n.ip }}</text>
<text x="{{ x + 8 }}" y="{{ top + 89 }}" font-size="9">{{ n.mac }}</text>
<text x="{{ x + 8 }}" y="{{ top + 104 }}" font-size="9">{% for r in n.roles %}{{ short[r] }}{% if not loop.last %}, {% endif %}{% endfor %}</text>
{% if "kvm" in n.roles %}<line x1="{{ x + box_w / 2 }}" y1="{{ top + 40 + box_h }}" x2="{{ x + box_w / 2 }}"
 y2="{{ top + 140 }}" stroke="#2e8b57" stroke-width="2"/>{% endif %}
{% endfor %}
<rect x="{{ margin }}" y="{{ top + 140 }}" width="{{ width - 2 * margin }}" height="6" fill="#2e8b57"/>
{% endfor %}
</svg>""", autoescape=True)


PAGE = jinja2.Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ plan.cluster }}: site dossier</title>
<style>
@page { size: A4; margin: 16mm 14mm 18mm 14mm;
        @bottom-left { content: "{{ plan.cluster }} · site file sha256 {{ checksum[:12] }} · {{ made }}";
                       font: 8pt "DejaVu Sans", sans-serif; }
        @bottom-right { content: counter(page) " / " counter(pages); font: 8pt "DejaVu Sans", sans-serif; } }
body { font-family: "DejaVu Sans", sans-serif; font-size: 10pt; color: #111; }
h1 { font-size: 18pt; margin: 0 0 4mm 0; } h2 { font-size: 13pt; margin-top: 6mm; }
table { border-collapse: collapse; width: 100%; margin: 2mm 0; }
th, td { border: 1px solid #999; padding: 1.2mm 2mm; text-align: left; vertical-align: top; }
th { background: #eee; }
.node { page-break-before: always; }
h2 { break-after: avoid; } table, svg { break-inside: avoid; }
code { font-family: "DejaVu Sans Mono", monospace; overflow-wrap: anywhere; }
.mono { overflow-wrap: anywhere; font-family: "DejaVu Sans Mono", monospace; }
.small { font-size: 8.5pt; color: #444; }
</style></head><body>
<h1>{{ plan.cluster }} ({{ plan.domain }})</h1>
<p class="small">Made by onehci {{ version }} on {{ made }} from {{ site_name }}, sha256 <span class="mono">{{ checksum }}</span>.
If the site file changed since, print this again: <span class="mono">onehci dossier {{ site_name }} --pdf FILE</span>.</p>

<h2>At a glance</h2>
<table>
<tr><th>OpenNebula frontend</th><td>{{ plan.opennebula.frontend }} ({{ plan.opennebula.frontend_ip }}), web UI http://{{ plan.opennebula.frontend_ip }}:2616/fireedge/sunstone</td></tr>
<tr><th>KVM hosts</th><td>{{ plan.opennebula.hosts | join(", ") }} (driver {{ plan.opennebula.vm_driver }})</td></tr>
<tr><th>MooseFS master</th><td>{{ plan.moosefs.master }} ({{ plan.moosefs.master_ip }})</td></tr>
<tr><th>Metaloggers</th><td>{{ plan.moosefs.metaloggers | join(", ") or "none" }}</td></tr>
<tr><th>Chunkservers</th><td>{{ plan.moosefs.chunkservers | join(", ") }}</td></tr>
<tr><th>Storage goal</th><td>{{ plan.moosefs.goal }} copies of every chunk; VM disks in {{ plan.moosefs.mount }}</td></tr>
<tr><th>Management network</th><td>{{ plan.networks.management.cidr }}, gateway {{ plan.networks.management.gateway }},
 DNS {{ plan.networks.management.dns | join(", ") }}, DHCP {{ plan.networks.management.dhcp }}, node addresses from {{ plan.networks.management.pool }}</td></tr>
<tr><th>VM network</th><td>bridge {{ plan.networks.vms.bridge }}, {{ plan.networks.vms.cidr }}, addresses {{ plan.networks.vms.range }}{% if plan.networks.vms.gateway %}, gateway {{ plan.networks.vms.gateway }}{% endif %}</td></tr>
<tr><th>Install server</th><td>{{ plan.networks.bootstrap.address }} on {{ plan.networks.bootstrap.interface }} (onehci pxe serve), install by {{ install }}</td></tr>
</table>

<h2>IP plan</h2>
<table><tr><th>node</th><th>address</th><th>MAC</th><th>boot</th><th>roles</th></tr>
{% for n in plan.nodes %}<tr><td>{{ n.hostname }}</td><td class="mono">{{ n.ip }}{% if n.ip_allocated %} *{% endif %}</td>
<td class="mono">{{ n.mac }}</td><td>{{ n.boot }}</td><td>{{ n.roles | join(", ") }}</td></tr>{% endfor %}
</table>
{% if allocated %}<p class="small">* chosen by the plan, not written in the site file: pin them with onehci plan --write before installing.</p>{% endif %}

<h2>The network</h2>
{{ drawing }}

<h2>Day-2 commands</h2>
<table>
<tr><th>when</th><th>run</th></tr>
<tr><td>Is the cloud healthy?</td><td class="mono">onehci status {{ site_name }}</td></tr>
<tr><td>Does a VM really run?</td><td class="mono">onehci smoke {{ site_name }}</td></tr>
<tr><td>A node failed or needs reinstalling</td><td class="mono">onehci rebuild NODE {{ site_name }}</td></tr>
<tr><td>A new server was added to site.yml</td><td class="mono">onehci add-node NODE {{ site_name }}</td></tr>
<tr><td>The MooseFS master died or its server is lost</td><td class="mono">onehci recover-master {{ site_name }} [--from NODE]</td></tr>
<tr><td>Package updates, one node at a time</td><td class="mono">onehci upgrade {{ site_name }} [--check]</td></tr>
<tr><td>A node must install again at its next network boot</td><td class="mono">onehci pxe arm NODE {{ site_name }}</td></tr>
<tr><td>What the cloud was used for, and its cost</td><td class="mono">onehci report {{ site_name }}</td></tr>
</table>
<p class="small">The runbooks: docs/operations/ in onehci.</p>

{% for n in plan.nodes %}
<section class="node">
<h1>{{ n.hostname }}</h1>
<table>
<tr><th>name</th><td>{{ n.fqdn }}</td></tr>
<tr><th>address</th><td class="mono">{{ n.ip }}</td></tr>
<tr><th>MAC (the network boot NIC)</th><td class="mono">{{ n.mac }}</td></tr>
<tr><th>roles</th><td>{% for r in n.roles %}{{ role_names[r] }}{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
<tr><th>boot mode</th><td>{{ "UEFI" if n.boot == "uefi" else "BIOS (legacy)" }}</td></tr>
<tr><th>OS disk</th><td class="mono">{{ disk(n.os_disk) }}</td></tr>
<tr><th>chunk disks (never wiped by an install)</th><td class="mono">{% for d in n.chunk_disks %}{{ disk(d) }}<br>{% else %}none{% endfor %}</td></tr>
</table>
<h2>When it fails</h2>
<ol>{% for step in failing(n) %}<li>{{ with_commands(step) }}</li>{% endfor %}</ol>
</section>
{% endfor %}
</body></html>""", autoescape=True)


def render_html(loaded, plan, made: str | None = None) -> str:
    site_name = str(loaded.path)  # as given: the commands printed work from where it was made
    return PAGE.render(
        plan=plan, site_name=site_name, checksum=file_sha256(Path(loaded.path)), version=__version__,
        made=made or dt.date.today().isoformat(), install=loaded.site.bootstrap.install,
        allocated=any(n.ip_allocated for n in plan.nodes), drawing=Markup(diagram(plan)),
        role_names=ROLE_NAMES, disk=_disk, with_commands=with_commands, failing=lambda n: when_it_fails(n, plan, site_name))


def render_pdf(html: str) -> bytes:
    import logging

    import weasyprint

    logging.getLogger("weasyprint").setLevel(logging.ERROR)  # its font warnings are not the technician's
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    return weasyprint.HTML(string=html).write_pdf()
