"""Plan -> Ansible inventory: the contract between onehci and the roles (docs/roles/README.md).

Only addresses, names, roles and disk names go in: no secret is ever part of an inventory
(the oneadmin password goes by the path of its file on the control machine, read by the
frontend role under no_log).

Every value comes from site.yml or is derived from it, and Ansible templates whatever it is not
told to leave alone: a `{{ lookup('pipe', ...) }}` in a value would run on the control machine.
So the inventory reaches Ansible as YAML (`to_yaml`) with every string tagged `!unsafe`,
Ansible's own mark for data that is never templated; `onehci inventory` prints the same text.
"""

from __future__ import annotations

import shlex

import yaml

from installer.plan import Plan

GROUPS = ("mfs_master", "mfs_metalogger", "mfs_chunkserver", "frontend", "kvm")


def build_inventory(site, plan: Plan, *, ssh_key: str | None = None, known_hosts: str | None = None,
                    format_consent: list[str] = (), oneadmin_password_file: str | None = None,
                    opennebula_repo: dict | None = None, marked: dict[str, list[str]] | None = None,
                    role_vars: dict | None = None) -> dict:
    """The inventory as the dict ansible-runner takes (YAML inventory structure).
    `opennebula_repo` ({url, trusted, ...}: docs/roles/opennebula_repo.md) replaces OpenNebula's
    own repository, e.g. with the lab's."""
    mgmt, vms = site.networks.management, site.networks.vms
    hosts = {}
    for node in plan.nodes:
        hostvars = {
            "ansible_host": node.ip,
            "ansible_user": "root",
            "onehci_hostname": node.hostname,
            "onehci_ip": node.ip,
            "onehci_fqdn": node.fqdn,
            "onehci_chunk_disks": node.chunk_disks,
        }
        if (marked or {}).get(node.hostname):
            # a drain in progress (installer/operations/storage.py): a deploy keeps it
            hostvars["moosefs_chunkserver__marked_for_removal"] = marked[node.hostname]
        hosts[node.hostname] = hostvars
    groups = {name: {"hosts": {n.hostname: {} for n in plan.with_role(name)}} for name in GROUPS}
    groups["mfs_client"] = {"hosts": {n: {} for n in plan.moosefs.clients}}
    ssh_args = ["-o ControlMaster=auto", "-o ControlPersist=60s", "-o ServerAliveInterval=10"]
    if known_hosts:
        # our own known_hosts: new nodes are accepted once, a changed key is refused
        # Ansible splits these options as a shell would: a site directory with a space stays one word
        ssh_args += [f"-o UserKnownHostsFile={shlex.quote(known_hosts)}", "-o StrictHostKeyChecking=accept-new"]
    allvars = {
        "onehci_cluster": site.cluster.name,
        "onehci_domain": site.cluster.domain,
        "onehci_management_cidr": str(mgmt.cidr.cidr),
        "onehci_vms_cidr": str(vms.cidr.cidr),
        "onehci_cluster_networks": [str(mgmt.cidr.cidr)],
        "onehci_mfsmaster_ip": plan.moosefs.master_ip,
        "onehci_goal": site.storage.goal,
        "onehci_apt_proxy": f"http://{site.bootstrap.address}:3142" if site.bootstrap.apt_proxy else "",
        "onehci_mirror": site.bootstrap.mirror,
        "onehci_datastores_path": plan.moosefs.mount,
        "onehci_hosts": [{"name": n.hostname, "ip": n.ip, "fqdn": n.fqdn} for n in plan.nodes],
        "onehci_format_consent": list(format_consent),
        "onehci_vms_bridge": vms.bridge,
        "ansible_ssh_common_args": " ".join(ssh_args),
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    if ssh_key:
        allvars["ansible_ssh_private_key_file"] = ssh_key
    allvars.update(role_vars or {})  # role variables the site's environment sets (installer/environment.py)
    if oneadmin_password_file:
        allvars["onehci_oneadmin_password_file"] = oneadmin_password_file
    if opennebula_repo:
        allvars["onehci_opennebula_repo"] = dict(opennebula_repo)
    return {"all": {"hosts": hosts, "vars": allvars, "children": groups}}


class _Unsafe(str):
    """A string Ansible must never template."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value)))


def _mark(value):
    if isinstance(value, dict):
        return {key: _mark(item) for key, item in value.items()}  # keys are names onehci chose
    if isinstance(value, (list, tuple)):
        return [_mark(item) for item in value]
    return _Unsafe(value) if isinstance(value, str) else value


def to_yaml(inventory: dict) -> str:
    """The inventory as YAML for Ansible, every string value tagged !unsafe."""
    return yaml.dump(_mark(inventory), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
