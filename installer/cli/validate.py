"""`onehci validate SITE`"""

from __future__ import annotations

import json

import click

from installer.cli.main_helpers import load_site_or_report, site_argument
from installer.errors import Reported
from installer.i18n import _, ngettext


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
        # two counts, each with its own plural: the sentence takes both as parts
        nodes, warnings = len(loaded.site.nodes), len(problems)
        click.echo(_("{site}: valid, {nodes}, {warnings}").format(
            site=site_path, nodes=ngettext("{count} node", "{count} nodes", nodes).format(count=nodes),
            warnings=ngettext("{count} warning", "{count} warnings", warnings).format(count=warnings)))


COMMANDS = [validate]
