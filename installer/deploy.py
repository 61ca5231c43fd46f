"""`onehci deploy`: the plan's inventory, then playbooks/site.yml through installer/ansible.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from installer import ansible, state
from installer.errors import OnehciError
from installer.inventory import build_inventory
from installer.plan import make_plan


def ssh_key_for(site_path: Path) -> str | None:
    """The lab's key when this site runs as a lab; otherwise the technician's own SSH setup."""
    key = state.state_dir(site_path) / "lab" / "id_ed25519"
    return str(key) if key.exists() else None


def deploy(loaded, *, limit: list[str] | None = None, check: bool = False, format_consent: list[str] = (),
           say: Callable[[str], None] = print) -> ansible.RunResult:
    plan = make_plan(loaded.site)
    names = {n.hostname for n in plan.nodes}
    unknown = [n for n in (limit or []) if n not in names]
    if unknown:
        raise OnehciError(f"--limit names no node of the site: {', '.join(unknown)} (nodes: {', '.join(sorted(names))})")
    consent = []
    for item in format_consent:
        node, _, disk = item.partition(":")
        if node not in names or not disk:
            raise OnehciError(f"--format-disk {item}: give NODE:DISK, e.g. lab2:serial:lab2-chunk1 or "
                              "nebula81:/dev/disk/by-id/ata-...")
        consent.append(disk)
    # a lab knows its nodes' host keys (new ones after every `lab up` of a fresh node); a real
    # site keeps its own known_hosts, where a changed key stops the deploy
    lab_known = state.state_dir(loaded.path) / "lab" / "known_hosts"
    known_hosts = lab_known if ssh_key_for(loaded.path) and lab_known.exists() else \
        state.state_dir(loaded.path) / "known_hosts"
    state.ensure(known_hosts.parent)
    inventory = build_inventory(loaded.site, plan, ssh_key=ssh_key_for(loaded.path),
                                known_hosts=str(known_hosts), format_consent=consent)
    return ansible.run_playbook(loaded.path, inventory, "site.yml", limit=limit, check=check, say=say)
