"""The `onehci` command group and the one place where errors become exit codes."""

from __future__ import annotations

import os
import sys

import click

from installer import __version__
from installer.errors import OnehciError, Reported, SiteInvalid, printable
from installer.i18n import _, ngettext


def debug_enabled() -> bool:
    return os.environ.get("ONEHCI_DEBUG", "") not in ("", "0")


def report_site_invalid(exc: SiteInvalid) -> None:
    for problem in exc.problems:
        click.echo(problem.render(), err=True)
    n = len(exc.errors)
    click.echo(ngettext("{count} error; nothing was written.", "{count} errors; nothing was written.", n)
               .format(count=n), err=True)


class OnehciGroup(click.Group):
    """Turns OnehciError into a message and exit 1; anything else is a bug."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Reported:  # the command has shown what failed
            sys.exit(1)
        except SiteInvalid as exc:
            if debug_enabled():
                raise
            report_site_invalid(exc)
            sys.exit(1)
        except OnehciError as exc:
            if debug_enabled():
                raise
            click.echo(_("error: {message}").format(message=printable(str(exc))), err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug: say so in one line unless --debug
            if debug_enabled():
                raise
            click.echo(_("internal error: {kind}: {message} (this is a bug in onehci; run again with --debug for "
                         "the traceback)").format(kind=type(exc).__name__, message=printable(str(exc))), err=True)
            sys.exit(1)


def _set_debug(ctx: click.Context, _param, value: bool) -> None:
    if value:
        os.environ["ONEHCI_DEBUG"] = "1"


@click.group(cls=OnehciGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onehci")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
              help="Show tracebacks (same as ONEHCI_DEBUG=1).")
def cli() -> None:
    """onehci: turn blank servers into an OpenNebula cloud on MooseFS.

    Start with `onehci init --profile three-node mysite`, edit mysite/site.yml,
    then `onehci validate` and `onehci plan`.
    """


def _register() -> None:
    from installer.cli import (add_node, deploy, discover, dossier, hashpw, image, init, inventory, lab, operation, plan, pxe,
                               rebuild, recover_master, report, smoke, status, upgrade, validate)

    for module in (init, validate, plan, hashpw, discover, image, pxe, deploy, inventory, lab, status, smoke, operation,
                   rebuild, add_node, upgrade, recover_master, report, dossier):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="onehci")
