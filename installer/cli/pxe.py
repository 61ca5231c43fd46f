"""`onehci pxe build|state|arm|serve`"""

from __future__ import annotations

import json
from pathlib import Path

import click

from installer.cli.main_helpers import load_site_or_report, site_argument
from installer.errors import Reported
from installer.i18n import _, ngettext


def _load(site_path: str):
    loaded, _ = load_site_or_report(site_path)
    if loaded is None:
        raise Reported()
    return loaded


@click.group()
def pxe() -> None:
    """Network installs: build the boot tree, serve it, arm a node for reinstall."""


@pxe.command()
@site_argument
@click.option("--out", type=click.Path(file_okay=False), help="Where to build (default: pxe/ next to SITE).")
@click.option("--netboot", type=click.Path(file_okay=False), default=None,
              help="Debian 12 netboot tree (default: the debian-installer-12-netboot-amd64 package's).")
@click.option("--diff", is_flag=True, help="Show what would change; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(site_path: str, out: str | None, netboot: str | None, diff: bool, as_json: bool) -> None:
    """Render dnsmasq.conf, the TFTP tree and one preseed per node."""
    from installer import pxe as pxe_mod

    loaded = _load(site_path)
    result = pxe_mod.build(loaded, Path(out) if out else None, Path(netboot) if netboot else None, diff=diff)
    if as_json:
        click.echo(json.dumps({"out": str(result.out), "files": result.files, "written": result.written,
                               "removed": result.removed, "diff": result.diff}, indent=2))
    elif diff:
        click.echo("".join(line if line.endswith("\n") else line + "\n" for line in result.diff), nl=False)
        changing = len([d for d in result.diff if d.startswith(("+++", "new:", "changed:", "removed:"))])
        click.echo(ngettext("{count} file(s) would change in {out}", "{count} file(s) would change in {out}",
                            changing).format(count=changing, out=result.out) if result.diff
                   else _("{out} is up to date").format(out=result.out), err=True)
    else:
        click.echo(_("{out}: {files} files, {written} written, {removed} removed; checks passed").format(
            out=result.out, files=result.files, written=len(result.written), removed=len(result.removed)))
        click.echo(_("next: onehci pxe serve {site}").format(site=site_path), err=True)


@pxe.command("state")
@site_argument
@click.option("--json", "as_json", is_flag=True, help="Print the states as JSON.")
def state_cmd(site_path: str, as_json: bool) -> None:
    """List each node's boot state: install or installed."""
    from installer import state
    from installer.bootstate import BootStates

    loaded = _load(site_path)
    boots = BootStates(state.state_dir(loaded.path)).all()
    rows = [{"hostname": n.hostname, "mac": n.mac,
             **({"state": "not built", "changed": None} if n.hostname not in boots
                else {k: v for k, v in boots[n.hostname].public().items() if k != "hostname"})}
            for n in loaded.site.nodes]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    # install, installed: the states' own names; "not built" in words
    shown = [_("not built") if row["state"] == "not built" else row["state"] for row in rows]
    width = max([10, *map(len, shown)])
    for row, label in zip(rows, shown):
        click.echo(f"{row['hostname']:16} {row['mac']}  {label:{width}} {row['changed'] or ''}")


@pxe.command()
@click.argument("node")
@site_argument
def arm(node: str, site_path: str) -> None:
    """Put NODE back to `install`: its next network boot reinstalls its os_disk."""
    from installer import pxe as pxe_mod
    from installer.errors import OnehciError

    loaded = _load(site_path)
    if loaded.site.node(node) is None:
        names = ", ".join(n.hostname for n in loaded.site.nodes)
        raise OnehciError(_("no node named {node} in {site} (nodes: {nodes})").format(node=node, site=site_path,
                                                                                      nodes=names))
    where = pxe_mod.arm(loaded, node)
    click.echo(_("{node} armed: its next network boot installs Debian on its os_disk; {done}").format(node=node,
                                                                                                     done=where))


@pxe.command()
@site_argument
@click.option("--force", is_flag=True, help="Start even when another DHCP server answers on the interface.")
@click.option("--json", "as_json", is_flag=True, help="Events as JSON lines on stdout.")
def serve(site_path: str, force: bool, as_json: bool) -> None:
    """Serve network installs in the foreground until Ctrl-C.

    Builds the tree first (nothing changes when it is up to date), checks the
    interface, ports and the network, then runs dnsmasq, the HTTP server and the
    installer-log receiver, showing per node: DHCP, boot files, preseed, install
    steps, install complete, local boot.
    """
    import signal

    from installer import pxe as pxe_mod
    from installer.bootserver import BootServer
    from installer.errors import OnehciError

    # Ctrl-C (SIGINT) stops it cleanly even when a script started it in the background, where the
    # shell has it ignore SIGINT and Python then never raises KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    loaded = _load(site_path)
    result = pxe_mod.build(loaded)

    def show(event) -> None:
        if as_json:
            click.echo(json.dumps(event.__dict__), nl=True)
        else:
            click.echo(event.line(), err=True)

    server = BootServer(loaded, result.out, show)
    reasons = server.preflight(force=force)
    if reasons:
        raise OnehciError(_("not serving:") + "\n  " + "\n  ".join(reasons))
    code = 0
    try:  # Ctrl-C at any moment once children may run (even before wait()) stops them all
        server.start()
        code = server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    raise SystemExit(code)


COMMANDS = [pxe]
