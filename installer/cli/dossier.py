"""`onehci dossier [SITE | --profile NAME] (--pdf FILE | --html FILE)`"""

from __future__ import annotations

from pathlib import Path

import click

from installer.cli.main_helpers import check_output_directories, load_site_or_profile, site_or_profile_options
from installer.i18n import _


@click.command()
@site_or_profile_options
@click.option("--pdf", "pdf_file", type=click.Path(dir_okay=False), help="Write the dossier as a PDF to print.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), help="Write the dossier as one web page.")
def dossier(site_path: str | None, profile: str | None, pdf_file: str | None, html_file: str | None) -> None:
    """The site on paper for the server room: the cluster at a glance, the IP plan, the network
    drawn, a page per node with what to do when it fails, the day-2 commands; nothing secret."""
    from installer import dossier as dossier_mod
    from installer.plan import make_plan
    from installer.state import write_atomic

    from installer.errors import OnehciError

    if not pdf_file and not html_file:
        raise OnehciError(_("say where to write the dossier: --pdf FILE, --html FILE or both"))
    check_output_directories(pdf_file, html_file)
    loaded = load_site_or_profile(site_path, profile)
    html = dossier_mod.render_html(loaded, make_plan(loaded.site))
    pdf = dossier_mod.render_pdf(html) if pdf_file else None  # everything made before anything is written
    if html_file:
        write_atomic(Path(html_file), html.encode())
        click.echo(_("wrote {file}").format(file=html_file))
    if pdf_file:
        write_atomic(Path(pdf_file), pdf)
        click.echo(_("wrote {file}").format(file=pdf_file))


COMMANDS = [dossier]
