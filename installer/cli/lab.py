"""`onehci lab up|down|status|shell`"""

from __future__ import annotations

import json

import click

from installer.cli.main_helpers import load_site_or_profile as _load
from installer.cli.main_helpers import site_or_profile_options as _site_options


def _say(message: str) -> None:
    click.echo(message, err=True)


def _show(lab, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(lab.as_dict(), indent=2))
        return
    click.echo(f"{'NODE':12} {'IP':15} {'STATE':8} {'SSH':4} DISKS")
    for n in lab.nodes:
        ssh = "-" if n.ssh is None else ("ok" if n.ssh else "no")
        shown = ", ".join(f"{link} -> {dev}" for link, dev in n.disks.items()) or "-"
        click.echo(f"{n.hostname:12} {n.ip:15} {'running' if n.running else 'stopped':8} {ssh:4} {shown}")
    from installer.lab import core

    if not core.FIREEDGE:
        click.echo("FireEdge not installed in the lab: its web UI is not part of the lab's OpenNebula build "
                   "(docs/lab.md, Limits)", err=True)
    repo = f"OpenNebula {lab.opennebula_version} from {lab.opennebula_repo}" if lab.opennebula_repo else "no OpenNebula repository"
    click.echo(f"bridge {lab.bridge} ({lab.address}), apt proxy {lab.apt_proxy or 'off'}, {repo}, "
               f"ssh -i {lab.ssh_key} root@IP", err=True)


@click.group()
def lab() -> None:
    """The rehearsal lab: the site's nodes as containers on this machine (root, Linux)."""


@lab.command()
@_site_options
@click.option("--json", "as_json", is_flag=True, help="Print the lab as JSON.")
def up(site_path: str | None, profile: str | None, as_json: bool) -> None:
    """Build and boot every node of SITE; a running lab is left as it is. The first run on a
    machine also builds OpenNebula's packages from its source (a few minutes; cached)."""
    from installer import lab as lab_mod

    loaded = _load(site_path, profile)
    result = lab_mod.up(loaded, say=_say)
    _say(f"started: {', '.join(result.started)}" if result.started else "the lab was already up; nothing changed")
    _show(result, as_json)


@lab.command()
@_site_options
def down(site_path: str | None, profile: str | None) -> None:
    """Stop the nodes and remove everything the lab made (the base image cache and the key stay)."""
    from installer import lab as lab_mod

    loaded = _load(site_path, profile)
    removed = lab_mod.down(loaded, say=_say)
    click.echo(f"removed: {', '.join(removed)}" if removed else "nothing to remove: the lab is down")


@lab.command()
@_site_options
@click.option("--json", "as_json", is_flag=True, help="Print the lab as JSON.")
def status(site_path: str | None, profile: str | None, as_json: bool) -> None:
    """List the nodes: address, running or not, SSH reachable."""
    from installer import lab as lab_mod

    _show(lab_mod.status(_load(site_path, profile)), as_json)


@lab.command()
@click.argument("node")
@_site_options
def reinstall(node: str, site_path: str | None, profile: str | None) -> None:
    """Reinstall NODE: stop it hard, erase its root filesystem, boot it fresh (same MAC, address and
    chunk disks, new SSH host keys) and send the install-complete callback when it was armed."""
    from installer import journal
    from installer.lab.reinstall import reinstall as run

    loaded = _load(site_path, profile)
    journal.refuse_while_unfinished(loaded.path, f"lab reinstall {node}")
    run(loaded, node, say=_say)


@lab.command()
@click.option("--source", type=click.Path(dir_okay=False),
              help="OpenNebula's release tarball (default: $ONEHCI_OPENNEBULA_SOURCE, else "
                   "../shared/vendor/opennebula-7.0.2.tar.gz beside this checkout).")
@click.option("--json", "as_json", is_flag=True, help="Print the build as JSON.")
def packages(source: str | None, as_json: bool) -> None:
    """Build OpenNebula's Debian packages from its source, for the lab's repository (cached: a second
    run with the same source, patches and recipe only shows the packages)."""
    from installer.lab import core, onebuild

    build = onebuild.ensure(source, fireedge=core.FIREEDGE, say=_say)
    if as_json:
        click.echo(json.dumps(build.as_dict(), indent=2))
        return
    for deb in build.debs:
        click.echo(f"{deb.name:22} {deb.version:18} {deb.size / 1e6:6.1f} MB  {deb.file}")
    how = "from the cache" if build.cached else f"built in {build.seconds:.0f} s"
    _say(f"{len(build.debs)} packages {how}: {build.directory}")


@lab.command(context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.option("--site", "site_path", type=click.Path(dir_okay=False), help="Site file (default: the shipped profile given by --profile).")
@click.option("--profile", help="Use a shipped profile's site file (default: lab).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def shell(node: str, site_path: str | None, profile: str | None, command: tuple[str, ...]) -> None:
    """Open a root shell in NODE, or run `-- COMMAND...` there."""
    import subprocess

    from installer import lab as lab_mod

    loaded = _load(site_path, profile)
    argv = list(command) or ["/bin/bash", "--login"]
    raise SystemExit(subprocess.call(lab_mod.nsenter_argv(loaded, node, argv)))


COMMANDS = [lab]
