"""`onehci upgrade SITE [--check] [--json] [--timeout SECONDS]`"""

from __future__ import annotations

import json

import click

from installer.cli.main_helpers import site_argument
from installer.errors import OnehciError, Reported
from installer.i18n import _, ngettext


def _say(message: str) -> None:
    click.echo(message, err=True)


def _show_check(nodes: list[dict]) -> None:
    for entry in nodes:
        packages, kept = entry["packages"], entry["kept_back"]
        if not packages:
            text = (ngettext("{node}: up to date ({kept} kept back: {kept_back})",
                             "{node}: up to date ({kept} kept back: {kept_back})", len(kept)) if kept
                    else _("{node}: up to date"))
        elif kept:
            text = ngettext("{node}: {count} package(s) to upgrade ({kept} kept back: {kept_back})",
                            "{node}: {count} package(s) to upgrade ({kept} kept back: {kept_back})", len(kept))
        else:
            text = ngettext("{node}: {count} package(s) to upgrade", "{node}: {count} package(s) to upgrade",
                            len(packages))
        click.echo(text.format(node=entry["node"], count=len(packages), kept=len(kept), kept_back=", ".join(kept)))
        for p in packages:
            installed = p["installed"] or _("(new)")
            click.echo(f"  {p['package']} {installed} -> {p['candidate']}")


def _show_run(report: dict) -> None:
    for entry in report["nodes"]:
        packages = entry.get("packages") or []
        what = ", ".join(f"{p['package']} {p['candidate']}" for p in packages) or _("nothing to upgrade")
        click.echo(_("{node}: {packages}; status {status} ({seconds} s)").format(
            node=entry["node"], packages=what, status=entry.get("status", "?"), seconds=f"{entry.get('seconds', 0):.0f}"))


@click.command()
@site_argument
@click.option("--check", "check_only", is_flag=True,
              help="Only list what would be upgraded on each node (refreshes apt's lists, installs nothing).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--timeout", default=600.0, show_default=True, metavar="SECONDS",
              help="Longest wait for a node to come back healthy after its upgrade (each wait).")
def upgrade(site_path: str, check_only: bool, as_json: bool, timeout: float) -> None:
    """Rolling package upgrade of every node, one at a time.

    Each node: its OpenNebula host disabled and its VMs moved away, `apt-get upgrade` (keeping
    changed configuration files), the upgraded services restarted, then it must come back
    healthy (MooseFS copies at their goal, host monitored, status green) before the next. The
    MooseFS master and the frontend go last. Stops at the first node that does not come back;
    running the same command again continues there (docs/operations/upgrade.md)."""
    from installer.cli.main_helpers import load_site_or_report
    from installer.operations import upgrade as op
    from installer.plan import make_plan

    loaded, _ = load_site_or_report(site_path)
    if loaded is None:
        raise Reported()
    plan = make_plan(loaded.site)
    if check_only:
        nodes = op.check(loaded, plan, say=_say)
        if as_json:
            click.echo(json.dumps({"order": op.order(plan), "nodes": nodes}, indent=2))
        else:
            _show_check(nodes)
        return
    try:
        report = op.run(loaded, plan, site_arg=site_path, timeout=timeout, say=_say)
    except op.UpgradeStopped as exc:
        if as_json:
            click.echo(json.dumps(exc.report, indent=2))
        raise
    except OnehciError as exc:  # refused before any node (unhealthy cloud, another operation...)
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(exc), "nodes": []}, indent=2))
        raise
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _show_run(report)


COMMANDS = [upgrade]
