"""Rules that compare fields with each other, all run in one pass.

Each finding is (location, message, severity); installer/sitefile.py adds file and line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import netaddr

from installer import ipplan
from installer.i18n import _
from installer.site import Site

Finding = tuple[tuple[Any, ...], str, str]
LineOf = Callable[[tuple[Any, ...]], "int | None"]


def check(site: Site, line_of: LineOf) -> list[Finding]:
    """Every cross-field error and warning of a site that passed field validation."""
    findings: list[Finding] = []
    for rule in (_unique_names, _addresses, _vms_network, _roles, _disks, _allocation, _ports):
        findings.extend(rule(site, line_of))
    return findings


def _error(loc: tuple, message: str) -> Finding:
    return (loc, message, "error")


def _warning(loc: tuple, message: str) -> Finding:
    return (loc, message, "warning")


def _unique_names(site: Site, line_of: LineOf) -> Iterator[Finding]:
    for attr in ("hostname", "mac"):
        first: dict[str, int] = {}
        for i, node in enumerate(site.nodes):
            value = getattr(node, attr)
            if value in first:
                j = first[value]
                yield _error(("nodes", i, attr), _used_by(value, j, site, line_of))
            else:
                first[value] = i


def _used_by(value, j: int, site: Site, line_of: LineOf) -> str:
    return _("{value} is also used by nodes[{index}] ({node}, line {line})").format(
        value=value, index=j, node=site.nodes[j].hostname, line=line_of(("nodes", j)))


def _inside(net: netaddr.IPNetwork, ip: netaddr.IPAddress, where: str | None = None) -> str | None:
    """Why `ip` cannot be a host address of `net` (named WHERE, default its CIDR), or None."""
    where = where or str(net.cidr)
    if ip not in net:
        return _("{address} is outside {network}").format(address=ip, network=where)
    if ip == net.network:
        return _("{address} is the network address of {network}").format(address=ip, network=where)
    if ip == net.broadcast:
        return _("{address} is the broadcast address of {network}").format(address=ip, network=where)
    return None


def _addresses(site: Site, line_of: LineOf) -> Iterator[Finding]:
    mgmt = site.networks.management
    net = mgmt.cidr
    where = f"networks.management {net.cidr}"
    for loc, ip in ((("networks", "management", "gateway"), mgmt.gateway), (("bootstrap", "address"), site.bootstrap.address)):
        why = _inside(net, ip, where)
        if why:
            yield _error(loc, why)
    if mgmt.pool:
        for end in (mgmt.pool.first, mgmt.pool.last):
            if _inside(net, end):
                yield _error(("networks", "management", "pool"), _("{first}-{last} does not fit inside {network}")
                             .format(first=mgmt.pool.first, last=mgmt.pool.last, network=where))
                break
    taken: dict[netaddr.IPAddress, int] = {}
    for i, node in enumerate(site.nodes):
        if node.ip is None:
            continue
        loc = ("nodes", i, "ip")
        why = _inside(net, node.ip, where)
        if why:
            yield _error(loc, why)
        elif node.ip == mgmt.gateway:
            yield _error(loc, _("{address} is the gateway's address").format(address=node.ip))
        elif node.ip == site.bootstrap.address:
            yield _error(loc, _("{address} is the bootstrap (boot server) address").format(address=node.ip))
        elif node.ip in mgmt.dns:
            yield _error(loc, _("{address} is a DNS server's address (networks.management.dns)")
                         .format(address=node.ip))
        if node.ip in taken:
            yield _error(loc, _used_by(node.ip, taken[node.ip], site, line_of))
        else:
            taken[node.ip] = i


def _vms_network(site: Site, line_of: LineOf) -> Iterator[Finding]:
    vms, mgmt = site.networks.vms, site.networks.management
    if vms.cidr.first <= mgmt.cidr.last and mgmt.cidr.first <= vms.cidr.last:
        yield _error(("networks", "vms", "cidr"), _("{network} overlaps networks.management {management}")
                     .format(network=vms.cidr.cidr, management=mgmt.cidr.cidr))
    pool = vms.pool()
    for end in (pool.first, pool.last):
        why = _inside(vms.cidr, end)
        if why:
            yield _error(("networks", "vms", "first" if end == pool.first else "size"),
                         _("the range {first}-{last} ({size} addresses) does not fit: {reason}")
                         .format(first=pool.first, last=pool.last, size=vms.size, reason=why))
            break
    if vms.gateway is not None:
        why = _inside(vms.cidr, vms.gateway)
        if why:
            yield _error(("networks", "vms", "gateway"), why)
        elif pool.first <= vms.gateway <= pool.last:
            yield _error(("networks", "vms", "gateway"),
                         _("{address} is inside the VM address range {first}-{last}; a VM would get the gateway's "
                           "address").format(address=vms.gateway, first=pool.first, last=pool.last))


def _roles(site: Site, line_of: LineOf) -> Iterator[Finding]:
    for role in ("mfs_master", "frontend"):
        # whole sentences per role: the translation of "a MooseFS master" depends on the sentence
        if role == "mfs_master":
            none = _("no node has the role {role}: a site needs exactly one MooseFS master")
            again = _("{role} is already on {node}: a site has exactly one MooseFS master")
        else:
            none = _("no node has the role {role}: a site needs exactly one OpenNebula frontend")
            again = _("{role} is already on {node}: a site has exactly one OpenNebula frontend")
        holders = site.with_role(role)
        if not holders:
            yield _error(("nodes",), none.format(role=role))
        for extra in holders[1:]:
            i = site.nodes.index(extra)
            yield _error(("nodes", i, "roles"), again.format(role=role, node=holders[0].hostname))
    chunkservers = site.with_role("mfs_chunkserver")
    goal = site.storage.goal
    if len(chunkservers) < goal:
        yield _error(("storage", "goal"), _("{goal} copies need at least {goal} chunkservers, the site has {count}")
                     .format(goal=goal, count=len(chunkservers)))
    if goal == 1:
        yield _warning(("storage", "goal"), _("goal 1 keeps a single copy of every chunk: one failed disk loses "
                                              "data. Use it only for a single-machine site"))
    masters = site.with_role("mfs_master")
    loggers = [n for n in site.with_role("mfs_metalogger") if n not in masters]
    if masters and not loggers:
        yield _warning(("nodes",), _("no mfs_metalogger runs on a node other than the master: if the master's "
                                     "server is lost, the whole filesystem is lost with it"))
    if not site.with_role("kvm"):
        yield _warning(("nodes",), _("no node has the role kvm: the cloud will have nowhere to run VMs"))
    for i, node in enumerate(site.nodes):
        if node.has("mfs_chunkserver") and not node.chunk_disks:
            yield _error(("nodes", i, "chunk_disks"), _("{node} is an mfs_chunkserver but lists no chunk_disks")
                         .format(node=node.hostname))
        if node.chunk_disks and not node.has("mfs_chunkserver"):
            yield _error(("nodes", i, "chunk_disks"), _("{node} lists chunk_disks but has no mfs_chunkserver role; "
                                                        "add the role or remove the disks").format(node=node.hostname))


def _serial_in_path(by_id: str) -> str | None:
    """The serial a by-id link name carries: ata-MODEL_SERIAL, virtio-SERIAL, nvme-MODEL_SERIAL."""
    name = by_id.rsplit("/", 1)[-1]
    if name.startswith("virtio-"):
        return name[len("virtio-"):]
    if name.startswith(("ata-", "scsi-", "nvme-", "usb-")) and "_" in name:
        return name.rsplit("_", 1)[-1]
    return None


def _disks(site: Site, line_of: LineOf) -> Iterator[Finding]:
    owner: dict[str, tuple] = {}
    for i, node in enumerate(site.nodes):
        listed = [(("nodes", i, "os_disk"), node.os_disk)]
        listed += [(("nodes", i, "chunk_disks", k), d) for k, d in enumerate(node.chunk_disks)]
        for loc, disk in listed:
            # the same disk may be named once by path and once by serial: compare both ways
            keys = [disk.key] + ([f"serial:{_serial_in_path(disk.by_id)}"] if disk.by_id and _serial_in_path(disk.by_id) else [])
            seen = next((k for k in keys if k in owner), None)
            if seen is not None:
                other = owner[seen]
                if other[1] == i and loc[2] == "chunk_disks" and other[2] == "os_disk":
                    msg = _("{disk} is the os_disk of {node}; the system disk cannot hold chunks").format(
                        disk=disk, node=node.hostname)
                elif other[1] == i:
                    msg = _("{disk} is listed twice for {node}").format(disk=disk, node=node.hostname)
                else:
                    msg = _("{disk} is also listed for nodes[{index}] ({node}, line {line}); a disk belongs to one "
                            "server").format(disk=disk, index=other[1], node=site.nodes[other[1]].hostname,
                                             line=line_of(other))
                yield _error(loc, msg)
            else:
                for key in keys:
                    owner.setdefault(key, loc)


def _allocation(site: Site, line_of: LineOf) -> Iterator[Finding]:
    try:
        ipplan.allocate(site)
    except ipplan.PoolExhausted as exc:
        yield _error(("networks", "management", "pool" if site.networks.management.pool else "cidr"), str(exc))


APT_PROXY_PORT = 3142  # apt-cacher-ng on the bootstrap address (installer/aptcache.py)


def _ports(site: Site, line_of: LineOf) -> Iterator[Finding]:
    boot = site.bootstrap
    if boot.apt_proxy and boot.http_port == APT_PROXY_PORT:
        yield _error(("bootstrap", "http_port"), _("{port} is apt-cacher-ng's port on the boot server "
                                                   "(bootstrap.apt_proxy): give the boot server's HTTP another one, "
                                                   "e.g. 8080").format(port=APT_PROXY_PORT))
