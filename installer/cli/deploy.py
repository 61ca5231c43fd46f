"""`onehci deploy SITE`"""

from __future__ import annotations

import json

import click

from installer.cli.main_helpers import load_site_or_profile, site_or_profile_options
from installer.i18n import _


@click.command()
@site_or_profile_options
@click.option("--limit", "limit", multiple=True, metavar="NODE", help="Only these nodes (repeat the option).")
@click.option("--check", is_flag=True, help="Dry run: show what would change, change nothing.")
@click.option("--format-disk", "format_disk", multiple=True, metavar="NODE:DISK",
              help="Allow formatting a chunk disk that already holds a filesystem or partitions.")
@click.option("--json", "as_json", is_flag=True, help="Print the recap as JSON on stdout.")
def deploy(site_path: str | None, profile: str | None, limit: tuple[str, ...], check: bool, format_disk: tuple[str, ...], as_json: bool) -> None:
    """Configure the installed nodes with Ansible: MooseFS (and later OpenNebula)."""
    from installer import ansible
    from installer.deploy import deploy as run_deploy

    loaded = load_site_or_profile(site_path, profile)
    result = run_deploy(loaded, limit=list(limit) or None, check=check, format_consent=list(format_disk),
                        say=lambda line: click.echo(line, err=True))
    if as_json:
        click.echo(json.dumps({"status": result.status, "run_dir": str(result.run_dir),
                               "seconds": round(result.seconds, 1), "failures": result.failures,
                               "recap": {h: vars(r) for h, r in result.recap.items()},
                               "registration": result.registration}, indent=2))
    else:
        click.echo("\n".join(ansible.recap_lines(result)))
        click.echo(_("{status} in {seconds} s; artifacts in {run_dir}").format(
            status=result.status, seconds=f"{result.seconds:.0f}", run_dir=result.run_dir), err=True)
    ansible.raise_for_failure(result)


COMMANDS = [deploy]
