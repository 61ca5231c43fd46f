"""`onehci rebuild NODE SITE`"""

from __future__ import annotations

import json
import sys

import click

from installer.cli.main_helpers import (load_site_or_profile, reinstaller, site_or_profile_options, step_answers,
                                        with_answer_options)
from installer.i18n import _


def ask_name(node: str, yes: bool, resuming: bool):
    """The confirmation: the node's name typed back (kubespray's way), or --yes; none is asked
    when an unfinished rebuild of NODE continues."""
    if not yes and not resuming and not sys.stdin.isatty():  # said before anything is looked at
        raise click.UsageError(_("rebuilding {node} needs a confirmation: run it in a terminal to type the "
                                 "node's name, or give --yes").format(node=node))

    def confirm(facts: dict) -> bool:
        if yes:
            return True
        typed = click.prompt(_("This takes {node} out of the cloud and reinstalls its OS disk (its chunk disks are "
                               "kept).\nType the node's name ({node}) to go on").format(node=node), default="",
                             show_default=False, err=True)
        return typed.strip() == node
    return confirm


@click.command()
@click.argument("node")
@site_or_profile_options
@click.option("--yes", is_flag=True, help="Do not ask to type the node's name.")
@with_answer_options
@click.option("--drain-timeout", default=1800.0, show_default=True, metavar="SECONDS",
              help="How long the drain may take before the rebuild stops (run it again to keep waiting).")
@click.option("--install-timeout", default=3600.0, show_default=True, metavar="SECONDS",
              help="How long to wait for the node's install-complete callback.")
@click.option("--json", "as_json", is_flag=True, help="Print the operation's journal as JSON at the end.")
def rebuild(node: str, site_path: str | None, profile: str | None, yes: bool, took_effect: tuple[str, ...],
            did_not: tuple[str, ...], drain_timeout: float, install_timeout: float, as_json: bool) -> None:
    """Take NODE out (VMs moved, chunks copied elsewhere), reinstall it, bring it back.

    Every step is journaled: interrupted, the same command continues where it stopped
    (docs/operations/rebuild.md)."""
    from installer import journal
    from installer.operations.rebuild import rebuild as run

    loaded = load_site_or_profile(site_path, profile)
    unfinished = journal.current(loaded.path)
    resuming = unfinished is not None and (unfinished["kind"], unfinished["target"]) == ("rebuild", node)
    result = run(loaded, node, say=lambda line: click.echo(line, err=True), confirm=ask_name(node, yes, resuming),
                 answers=step_answers(took_effect, did_not), drain_timeout=drain_timeout,
                 install_timeout=install_timeout, reinstall=reinstaller(loaded))
    if as_json:
        click.echo(json.dumps(result, indent=2))


COMMANDS = [rebuild]
