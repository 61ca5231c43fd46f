"""`onehci recover-master [SITE] [--from NODE]`"""

from __future__ import annotations

import json
import sys

import click

from installer.cli.main_helpers import load_site_or_profile, site_or_profile_options, step_answers, with_answer_options
from installer.i18n import _


def ask_name(node: str | None, yes: bool):
    """The confirmation of a promotion: the new master's name typed back, or --yes. An in-place
    recovery changes no layout and asks nothing."""
    if node and not yes and not sys.stdin.isatty():  # said before anything is looked at or changed
        raise click.UsageError(_("promoting {node} needs a confirmation: run it in a terminal to type the node's "
                                 "name, or give --yes").format(node=node))

    def confirm(facts: dict) -> bool:
        if yes or not node:
            return True
        typed = click.prompt(_("This makes {node} the MooseFS master from its metalogger's copy (metadata version "
                               "{version}) and moves mfs_master from {old} to it in the site file; {old} must never "
                               "run its master again.\nType the node's name ({node}) to go on").format(
                                 node=node, version=facts.get("before"), old=facts.get("old")),
                             default="", show_default=False, err=True)
        return typed.strip() == node
    return confirm


@click.command("recover-master")
@site_or_profile_options
@click.option("--from", "source", metavar="NODE",
              help="The master host is lost: promote the metalogger on NODE to be the master.")
@click.option("--yes", is_flag=True, help="Do not ask to type NODE's name before the promotion.")
@with_answer_options
@click.option("--timeout", default=300.0, show_default=True, metavar="SECONDS",
              help="How long to wait for the master to answer and the chunkservers to come back.")
@click.option("--json", "as_json", is_flag=True, help="Print the operation's journal and a summary as JSON.")
def recover_master(site_path: str | None, profile: str | None, source: str | None, yes: bool,
                   took_effect: tuple[str, ...], did_not: tuple[str, ...], timeout: float, as_json: bool) -> None:
    """Bring the MooseFS master back: restart it with `mfsmaster -a` after a crash, or (--from
    NODE) promote a metalogger when the master host is lost.

    Every step is journaled: interrupted, the same command continues where it stopped
    (docs/operations/recover-master.md)."""
    from installer.operations.recover_master import recover_master as run

    answers = step_answers(took_effect, did_not)
    confirm = ask_name(source, yes)
    loaded = load_site_or_profile(site_path, profile)
    result = run(loaded, source, say=lambda line: click.echo(line, err=True), confirm=confirm,
                 answers=answers, timeout=timeout)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        s = result["summary"]
        click.echo(_("MooseFS master on {master}: metadata version {after} (on disk before: {before}); status {status}")
                   .format(master=s["master"], after=s["metadata_version_after"],
                           before=s["metadata_version_before"], status=s["status"]))


COMMANDS = [recover_master]
