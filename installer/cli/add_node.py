"""`onehci add-node NODE SITE`"""

from __future__ import annotations

import json

import click

from installer.cli.main_helpers import (load_site_or_profile, reinstaller, site_or_profile_options, step_answers,
                                        with_answer_options)


@click.command("add-node")
@click.argument("node")
@site_or_profile_options
@with_answer_options
@click.option("--install-timeout", default=3600.0, show_default=True, metavar="SECONDS",
              help="How long to wait for the node's install-complete callback.")
@click.option("--json", "as_json", is_flag=True, help="Print the operation's journal as JSON at the end.")
def add_node(node: str, site_path: str | None, profile: str | None, took_effect: tuple[str, ...],
             did_not: tuple[str, ...], install_timeout: float, as_json: bool) -> None:
    """Install NODE, newly written in SITE, and make it part of the cloud.

    Deployed nodes keep their addresses (checked first). Journaled: interrupted, the same
    command continues where it stopped (docs/operations/add-node.md)."""
    from installer.operations.add_node import add_node as run

    loaded = load_site_or_profile(site_path, profile)
    result = run(loaded, node, say=lambda line: click.echo(line, err=True),
                 answers=step_answers(took_effect, did_not), install_timeout=install_timeout,
                 reinstall=reinstaller(loaded))
    if as_json:
        click.echo(json.dumps(result, indent=2))


COMMANDS = [add_node]
