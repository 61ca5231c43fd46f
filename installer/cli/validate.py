"""`onehci validate SITE`"""

from __future__ import annotations

import json

import click

from installer.cli.main_helpers import load_site_or_report, site_argument
from installer.errors import Reported


@click.command()
@site_argument
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def validate(site_path: str, as_json: bool, strict: bool) -> None:
    """Check a site file and report every problem at once."""
    loaded, problems = load_site_or_report(site_path, as_json=as_json, strict=strict)
    if as_json:
        click.echo(json.dumps({"file": site_path, "valid": loaded is not None,
                               "errors": [p.as_dict() for p in problems if p.severity == "error"],
                               "warnings": [p.as_dict() for p in problems if p.severity == "warning"]},
                              indent=2))
    if loaded is None:
        raise Reported()
    if not as_json:
        warnings = len(problems)
        click.echo(f"{site_path}: valid, {len(loaded.site.nodes)} node{'s' if len(loaded.site.nodes) != 1 else ''}"
                   f", {warnings} warning{'s' if warnings != 1 else ''}")


COMMANDS = [validate]
