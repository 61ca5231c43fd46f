"""`onehci smoke [SITE | --profile lab] [--count N] [--keep] [--json]`"""

from __future__ import annotations

import json

import click

from installer.cli.main_helpers import load_site_or_profile, site_or_profile_options
from installer.errors import Reported
from installer.i18n import _


@click.command()
@site_or_profile_options
@click.option("--count", type=click.IntRange(min=1), default=None, metavar="N",
              help="How many VMs (default: one per KVM host), spread over the hosts.")
@click.option("--keep", is_flag=True, help="Leave the VMs, image and template in place afterwards.")
@click.option("--timeout", default=300.0, show_default=True, metavar="SECONDS", help="Longest wait of each step.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def smoke(site_path: str | None, profile: str | None, count: int | None, keep: bool, timeout: float,
          as_json: bool) -> None:
    """Run VMs on the deployed cloud and check their guests come up: one VM per KVM host, a live
    migration, then everything removed. Exit 0 when every step passed, 1 otherwise.

    What to run after a real install (docs/smoke.md)."""
    from installer.operations.smoke import smoke as run

    loaded = load_site_or_profile(site_path, profile)
    result = run(loaded, count=count, keep=keep, timeout=timeout, say=lambda line: click.echo(line, err=True))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(_("smoke: passed") if result["ok"] else _("smoke: FAILED: {error}").format(error=result["error"]))
    if not result["ok"]:
        raise Reported()


COMMANDS = [smoke]
