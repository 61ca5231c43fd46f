"""Where a site's nodes are reached and installed from, as data in its state directory.

Most sites need none of it: the technician's own SSH key, the site's own known_hosts, and
OpenNebula's own repository. A site whose nodes live elsewhere says so in
`STATE/environment.json`; the rehearsal lab writes it at `lab up` (its key, its known_hosts,
its repository, its role variables, and that its nodes are reinstalled by `lab reinstall`) and
removes it at `lab down`. A real site may write one too, e.g. to install OpenNebula from a
local mirror. Production code reads this data; it never imports the lab.

    {"kind": "lab",                                  # "lab" or "site"
     "ssh_key": "/path/id_ed25519",                  # the key deploy, status and day-2 connect with
     "known_hosts": "/path/known_hosts",             # their known_hosts (else STATE/known_hosts)
     "opennebula_repo": {"url": ..., "key_url": ...},  # onehci_opennebula_repo for the roles
     "role_vars": {"moosefs_master__options": {...}}}  # more inventory variables
"""

from __future__ import annotations

from pathlib import Path

from installer import state

FILE = "environment.json"


def read(site_path) -> dict:
    return state.read_json(state.state_dir(site_path) / FILE, {})


def write(site_path, data: dict) -> None:
    state.write_json(state.ensure(state.state_dir(site_path)) / FILE, data)


def remove(site_path) -> None:
    (state.state_dir(site_path) / FILE).unlink(missing_ok=True)


def is_lab(site_path) -> bool:
    """Are the site's nodes the rehearsal lab's containers (reinstalled by `lab reinstall`)?"""
    return read(site_path).get("kind") == "lab"


def ssh_identity(site_path) -> tuple[str | None, Path]:
    """(SSH key, known_hosts) for the site's nodes: the environment's when it names them (the
    lab: its key, and known_hosts it rewrites after every `lab up` of a fresh node), else the
    technician's own SSH setup with the site's own known_hosts, where a changed key stops the
    deploy."""
    env = read(site_path)
    key = env.get("ssh_key")
    known = Path(env["known_hosts"]) if env.get("known_hosts") else state.state_dir(site_path) / "known_hosts"
    state.ensure(known.parent)
    return (key if key and Path(key).exists() else None), known


def opennebula_repo(site_path) -> dict | None:
    """The roles' onehci_opennebula_repo, or None for OpenNebula's own repository."""
    return read(site_path).get("opennebula_repo")


def role_vars(site_path) -> dict:
    return dict(read(site_path).get("role_vars") or {})
