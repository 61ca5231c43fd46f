"""`onehci init` and `onehci profiles`"""

from __future__ import annotations

import click

from installer.i18n import _


@click.command()
@click.option("--profile", "profile", required=True, help="Profile to start from (see `onehci profiles`).")
@click.option("--force", is_flag=True, help="Overwrite an existing site.yml.")
@click.argument("directory", type=click.Path(file_okay=False))
def init(profile: str, force: bool, directory: str) -> None:
    """Write DIRECTORY/site.yml from a commented profile."""
    from installer import siteinit

    target = siteinit.init_site(profile, directory, force=force)
    click.echo(_("wrote {file} from profile {profile}; edit it, then run `onehci validate {file}`").format(
        file=target, profile=profile))


@click.command()
def profiles() -> None:
    """List the example sites that `onehci init` can start from."""
    from installer import siteinit

    for name, summary in siteinit.list_profiles():
        click.echo(f"{name:14} {summary}")


COMMANDS = [init, profiles]
