"""`onehci status [SITE | --profile NAME] [--json] [--watch]`"""

from __future__ import annotations

import json
import sys
import time

import click

from installer.cli.main_helpers import load_site_or_profile, site_or_profile_options

STYLES = {"green": "green", "amber": "yellow", "red": "bold red"}


def render(result):
    """One line per component: colour, component, reason; then the verdict."""
    from rich.console import Group
    from rich.text import Text

    from installer.i18n import _
    from installer.status import colour_text, verdict_text

    colours = {colour: colour_text(colour) for colour in STYLES}
    shade = max(len(text) for text in colours.values())  # 5 in English: green, amber, red
    width = max((len(c.component) for c in result.checks), default=0)
    lines = [Text.assemble((f"{colours[c.colour]:<{shade}}", STYLES[c.colour]),
                           f"  {c.component:<{width}}  {c.reason}") for c in result.checks]
    # the verdict keeps its colour wherever the translation puts it
    before, after = (part.format(code=result.exit_code, seconds=f"{result.seconds:.1f}")
                     for part in _("{verdict} (exit {code}) in {seconds} s").split("{verdict}", 1))
    verdict = (verdict_text(result.exit_code), STYLES[("green", "amber", "red")[result.exit_code]])
    lines.append(Text.assemble(before, verdict, after))
    return Group(*lines)


@click.command()
@site_or_profile_options
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON (one object a round with --watch).")
@click.option("--watch", is_flag=True, help="Check again every few seconds until Ctrl-C.")
@click.option("--every", default=5.0, show_default=True, metavar="SECONDS", help="Pause between rounds of --watch.")
# the default is installer.status.TIMEOUT (not imported here: `--help` stays quick; a unit test compares)
@click.option("--timeout", default=4.0, show_default=True, metavar="SECONDS", type=click.FloatRange(1, 300),
              help="Time each call of a check may take (SSH to a node one second more): raise it for nodes "
                   "that answer slowly, e.g. emulated ones.")
def status(site_path: str | None, profile: str | None, as_json: bool, watch: bool, every: float,
           timeout: float) -> None:
    """The cloud's health, one line per component: green, amber or red, and why.

    Exit 0 healthy, 1 degraded, 2 down (docs/opennebula.md gives the rule)."""
    from rich.console import Console

    from installer import status as status_mod
    from installer.plan import make_plan

    loaded = load_site_or_profile(site_path, profile)
    plan = make_plan(loaded.site)
    console = Console(soft_wrap=True, highlight=False)  # long reasons stay on their line

    def show(result) -> None:
        if as_json:
            click.echo(json.dumps(result.as_dict(), indent=None if watch else 2))
        else:
            console.print(render(result))

    result = status_mod.gather(loaded, plan, timeout=timeout)
    if not watch:
        show(result)
        sys.exit(result.exit_code)
    if as_json:
        try:
            while True:
                show(result)
                time.sleep(every)
                result = status_mod.gather(loaded, plan, timeout=timeout)
        except KeyboardInterrupt:
            sys.exit(result.exit_code)
    from rich.live import Live

    with Live(render(result), console=console, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(every)
                result = status_mod.gather(loaded, plan, timeout=timeout)
                live.update(render(result), refresh=True)
        except KeyboardInterrupt:
            pass
    sys.exit(result.exit_code)


COMMANDS = [status]
