"""`onehci operation show [SITE]` and `onehci operation abandon [SITE]`: the site's unfinished day-2
operation (installer/journal.py)."""

from __future__ import annotations

import json

import click

from installer.cli.main_helpers import load_site_or_profile, site_or_profile_options
from installer.i18n import _


def describe(found: dict) -> list[str]:
    state = {"running": _("running"), "interrupted": _("interrupted"), "stopped": _("stopped")}.get(found["state"],
                                                                                                  found["state"])
    lines = [_("{kind} {target}: {state}, at {where}").format(kind=found["kind"], target=found["target"], state=state,
                                                             where=found["where"]),
             _("  started {created} by `{command}`").format(created=found["created"], command=found["command"])]
    for number, step in enumerate(found["steps"], 1):
        mark = {"done": _("done"), "started": _("INTERRUPTED"), "failed": _("FAILED")}.get(step["status"], "-")
        extra = f"  ({step['message']})" if step["message"] else ""
        lines.append(f"  {number:>2}. {step['name']:<12} {mark}{extra}")
    return lines


@click.group()
def operation() -> None:
    """The site's unfinished day-2 operation: show it, abandon it."""


@operation.command()
@site_or_profile_options
@click.option("--json", "as_json", is_flag=True, help="Print the journal as JSON (null when none).")
def show(site_path: str | None, profile: str | None, as_json: bool) -> None:
    """The unfinished operation (rebuild, add-node, recover-master, upgrade), step by step."""
    from installer import journal

    loaded = load_site_or_profile(site_path, profile)
    found = journal.current(loaded.path)
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif found is None:
        click.echo(_("no operation is unfinished on this site"))
    else:
        click.echo("\n".join(describe(found)))


@operation.command()
@site_or_profile_options
@click.option("--reason", default="", help="Why, kept in the journal's history.")
@click.option("--yes", is_flag=True, help="Do not ask.")
def abandon(site_path: str | None, profile: str | None, reason: str, yes: bool) -> None:
    """Free the site from its unfinished operation; undoes nothing (docs/operations/README.md)."""
    from installer import journal
    from installer.errors import OnehciError

    loaded = load_site_or_profile(site_path, profile)
    found = journal.current(loaded.path)
    if found is None:
        raise OnehciError(_("no operation is unfinished on this site: there is nothing to abandon"))
    if not yes:
        click.echo("\n".join(describe(found)), err=True)
        click.confirm(_("Abandon it? Nothing it changed is undone"), abort=True, err=True)
    done = journal.abandon(loaded.path, reason)
    click.echo(_("{kind} {target} abandoned; its journal stays in the state directory's operations/history").format(
        kind=done["kind"], target=done["target"]), err=True)


COMMANDS = [operation]
