"""`onehci image build|show`"""

from __future__ import annotations

import json

import click

from installer.cli.main_helpers import load_site_or_report, site_argument
from installer.errors import Reported


def _load(site_path: str):
    loaded, _ = load_site_or_report(site_path)
    if loaded is None:
        raise Reported()
    return loaded


def _summary(image, built: bool) -> dict:
    info = image.info
    return {"directory": str(image.directory), "built_now": built, "key": info["key"], "kernel": info["kernel"],
            "packages": len(info["packages"]), "archive_bytes": info["archive_bytes"],
            "unpacked_bytes": info["unpacked_bytes"], "installer_bytes": info["initrd_bytes"],
            "sha256": info["sha256"], "built": info["built"], "build_seconds": info["build_seconds"]}


def _show(summary: dict) -> None:
    mib = 1 << 20
    click.echo(f"{summary['directory']}\n  Debian 12, kernel {summary['kernel']}, {summary['packages']} packages; "
               f"{summary['archive_bytes'] // mib} MiB packed, {summary['unpacked_bytes'] // mib} MiB on disk\n"
               f"  installer environment {summary['installer_bytes'] // mib} MiB; built {summary['built']} "
               f"in {summary['build_seconds']} s")


@click.group()
def image() -> None:
    """The node image: the system an image install writes to every node."""


@image.command()
@site_argument
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(site_path: str, as_json: bool) -> None:
    """Build the site's node image and installer environment (once per content; as root)."""
    from installer import image as image_mod

    loaded = _load(site_path)
    found, built = image_mod.ensure(loaded, say=lambda line: click.echo(line, err=True))
    summary = _summary(found, built)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    if not built:
        click.echo("up to date: the image for this site's content is built already", err=True)
    _show(summary)
    click.echo(f"next: onehci pxe build {site_path}", err=True)


@image.command()
@site_argument
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def show(site_path: str, as_json: bool) -> None:
    """Show the site's node image, or say it is not built."""
    from installer import image as image_mod
    from installer.errors import OnehciError

    loaded = _load(site_path)
    found = image_mod.find(loaded.site)
    if found is None:
        raise OnehciError(f"no node image built for this site's content: run `onehci image build {site_path}`")
    summary = _summary(found, False)
    click.echo(json.dumps(summary, indent=2)) if as_json else _show(summary)


COMMANDS = [image]
