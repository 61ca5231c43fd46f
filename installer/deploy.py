"""`onehci deploy`: the plan's inventory, then playbooks/site.yml through installer/ansible.py."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from installer import ansible, chunkmarks, environment, remote, state
from installer.errors import OnehciError
from installer.i18n import _
from installer.inventory import build_inventory
from installer.plan import Plan, make_plan


def inventory_for(loaded, plan: Plan | None = None, *, format_consent: list[str] = ()) -> dict:
    """The inventory `onehci deploy` hands to Ansible (`onehci inventory` prints it): the plan,
    with what the site's environment says (installer/environment.py: the lab's key, repository
    and role variables) and the chunk disks a day-2 operation has marked for removal."""
    ssh_key, known_hosts = environment.ssh_identity(loaded.path)
    state.oneadmin_password(loaded.path)  # made here, once: the frontend role reads the file
    return build_inventory(loaded.site, plan or make_plan(loaded.site), ssh_key=ssh_key,
                           known_hosts=str(known_hosts), format_consent=list(format_consent),
                           oneadmin_password_file=str(state.oneadmin_password_file(loaded.path)),
                           opennebula_repo=environment.opennebula_repo(loaded.path),
                           marked=chunkmarks.marks(loaded.path), role_vars=environment.role_vars(loaded.path))


def learn_host_keys(nodes, known_hosts: Path, ssh_key: str | None) -> None:
    """Accept a new node's SSH host key once (trust on first use) and stop on a changed one.

    Mitogen's SSH options come before the inventory's, so `StrictHostKeyChecking=accept-new`
    there would never apply: first contact happens here, with plain ssh, for every node at once.
    An unreachable node is left to the preflight, which says so in its own words."""
    def contact(node) -> tuple[object, str, int]:
        argv = [*remote.ssh_argv(node.ip, ssh_key, str(known_hosts), 10, host_keys="accept-new"), "true"]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            return node, "", 255
        return node, proc.stderr, proc.returncode

    with ThreadPoolExecutor(max(1, min(len(nodes), 16))) as pool:
        results = list(pool.map(contact, nodes))
    changed = [node for node, stderr, rc in results if rc != 0 and "IDENTIFICATION HAS CHANGED" in stderr]
    if changed:
        names = ", ".join(f"{n.hostname} ({n.ip})" for n in changed)
        forget = "; ".join(f"ssh-keygen -R {n.ip} -f {known_hosts}" for n in changed)
        raise OnehciError(_("the SSH host key of {nodes} changed since the last deploy; if the node was "
                            "reinstalled, forget the old key ({forget}) and deploy again; otherwise find out "
                            "who answers at that address").format(nodes=names, forget=forget))


def deploy(loaded, *, limit: list[str] | None = None, check: bool = False, format_consent: list[str] = (),
           say: Callable[[str], None] = print) -> ansible.RunResult:
    plan = make_plan(loaded.site)
    names = {n.hostname for n in plan.nodes}
    unknown = [n for n in (limit or []) if n not in names]
    if unknown:
        raise OnehciError(_("--limit names no node of the site: {unknown} (nodes: {nodes})").format(
            unknown=", ".join(unknown), nodes=", ".join(sorted(names))))
    consent = []
    for item in format_consent:
        node, _sep, disk = item.partition(":")
        if node not in names or not disk:
            raise OnehciError(_("--format-disk {item}: give NODE:DISK, e.g. lab2:serial:lab2-chunk1 or "
                                "nebula81:/dev/disk/by-id/ata-...").format(item=item))
        consent.append(disk)
    ssh_key, known_hosts = environment.ssh_identity(loaded.path)
    learn_host_keys([n for n in plan.nodes if not limit or n.hostname in limit], known_hosts, ssh_key)
    inventory = inventory_for(loaded, plan, format_consent=consent)
    result = ansible.run_playbook(loaded.path, inventory, "site.yml", limit=limit, check=check, say=say)
    if result.status == "successful" and result.rc == 0 and not check:
        from installer import one

        hosts = [h for h in plan.opennebula.hosts if h in limit] if limit else None
        wait = one.monitoring_wait(inventory["all"]["vars"].get(one.PROBE_TIMEOUT_VAR, one.PROBE_TIMEOUT))
        result.registration = one.register_cloud(loaded, plan, hosts=hosts, timeout=wait, say=say).as_dict()
        record_deployed(loaded, [n for n in plan.nodes if not limit or n.hostname in limit])
    return result


def apply(loaded, playbook: str, hostnames: list[str], *, say: Callable[[str], None] = print) -> None:
    """Run one of the day-2 playbooks (playbooks/README.md) on HOSTNAMES only, with the site's
    inventory; stops with the failed task's message. The roles stay the only writers of a node."""
    ssh_key, known_hosts = environment.ssh_identity(loaded.path)
    plan = make_plan(loaded.site)
    learn_host_keys([n for n in plan.nodes if n.hostname in hostnames], known_hosts, ssh_key)
    result = ansible.run_playbook(loaded.path, inventory_for(loaded, plan), playbook, limit=hostnames, say=say)
    ansible.raise_for_failure(result)


def apply_chunk_marks(loaded, hostname: str, disks: list[str], *, say: Callable[[str], None] = print) -> None:
    """Mark DISKS of HOSTNAME for removal ([]: unmark them all): recorded in the site's state, then
    rendered into mfshdd.cfg by the chunkserver role alone, which reloads (or starts) the
    chunkserver and checks it runs."""
    chunkmarks.record(loaded.path, hostname, disks)
    apply(loaded, "chunk-disks.yml", [hostname], say=say)


DEPLOYED = "deployed.json"


def deployed(site_path) -> dict[str, dict]:
    """{hostname: {ip, mac}} of every node a deploy finished on: what add-node must not move."""
    return state.read_json(state.state_dir(site_path) / DEPLOYED, {})


def record_deployed(loaded, nodes) -> None:
    with state.locked(state.ensure(state.state_dir(loaded.path)), "deployed"):
        found = deployed(loaded.path)
        found.update({n.hostname: {"ip": n.ip, "mac": n.mac} for n in nodes})
        state.write_json(state.state_dir(loaded.path) / DEPLOYED, found)
