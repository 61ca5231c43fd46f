"""Address allocation: pure functions over netaddr values.

Nodes without an `ip` get the lowest free addresses of the management pool in
hostname order. Explicit addresses, the gateway, the boot server and the DNS
servers are never handed out. Allocation depends only on the site file, so it
is the same on every run; `onehci plan --write` pins the result into site.yml so
that adding a node later never moves an address already in use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import netaddr

from installer.errors import OnehciError
from installer.i18n import _


class PoolExhausted(OnehciError):
    """The pool has fewer free addresses than nodes waiting for one."""


def usable(network: netaddr.IPNetwork) -> netaddr.IPRange:
    """Host addresses of a network: without its network and broadcast addresses."""
    return netaddr.IPRange(network.first + 1, network.last - 1)


def free_addresses(pool: netaddr.IPRange, reserved: Iterable[netaddr.IPAddress]) -> Iterator[netaddr.IPAddress]:
    """Addresses of `pool` in ascending order, skipping `reserved`."""
    taken = {int(ip) for ip in reserved}
    for value in range(pool.first, pool.last + 1):
        if value not in taken:
            yield netaddr.IPAddress(value)


def allocate_addresses(names: Iterable[str], pool: netaddr.IPRange,
                       reserved: Iterable[netaddr.IPAddress]) -> dict[str, netaddr.IPAddress]:
    """Give each name (taken in sorted order) the next free address of `pool`."""
    wanted = sorted(names)
    free = free_addresses(pool, reserved)
    result = {}
    for name in wanted:
        ip = next(free, None)
        if ip is None:
            raise PoolExhausted(_("no free address left for {node}: the pool {pool} has room for {count} of the "
                                  "{total} nodes without an ip").format(node=name, pool=pool, count=len(result),
                                                                        total=len(wanted)))
        result[name] = ip
    return result


def pool_of(site) -> netaddr.IPRange:
    """The range node addresses are allocated from, clipped to the network's host addresses."""
    mgmt = site.networks.management
    hosts = usable(mgmt.cidr)
    if mgmt.pool is None:
        return hosts
    first = max(mgmt.pool.first, hosts[0])
    last = min(mgmt.pool.last, hosts[-1])
    return netaddr.IPRange(first, last) if first <= last else netaddr.IPRange(hosts[0], hosts[0])


def reserved_of(site) -> set[netaddr.IPAddress]:
    mgmt = site.networks.management
    reserved = {mgmt.gateway, site.bootstrap.address, *mgmt.dns}
    reserved.update(n.ip for n in site.nodes if n.ip is not None)
    return reserved


def allocate(site) -> dict[str, netaddr.IPAddress]:
    """Addresses for the nodes of `site` that have no `ip`: hostname -> address."""
    missing = [n.hostname for n in site.nodes if n.ip is None]
    if not missing:
        return {}
    return allocate_addresses(missing, pool_of(site), reserved_of(site))
