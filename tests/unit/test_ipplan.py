"""Address allocation and pinning addresses into site.yml."""

from __future__ import annotations

import netaddr
import pytest

from installer import ipplan, sitefile
from installer.plan import make_plan
from tests.conftest import BASE_SITE

IP = netaddr.IPAddress


def test_allocation_takes_lowest_free_addresses_in_hostname_order():
    pool = netaddr.IPRange("10.0.0.1", "10.0.0.10")
    got = ipplan.allocate_addresses(["b", "c", "a"], pool, [IP("10.0.0.1"), IP("10.0.0.3")])
    assert got == {"a": IP("10.0.0.2"), "b": IP("10.0.0.4"), "c": IP("10.0.0.5")}


def test_allocation_fails_clearly_when_the_pool_is_full():
    with pytest.raises(ipplan.PoolExhausted, match="room for 1 of the 2"):
        ipplan.allocate_addresses(["a", "b"], netaddr.IPRange("10.0.0.1", "10.0.0.2"), [IP("10.0.0.1")])


def test_usable_leaves_out_network_and_broadcast():
    hosts = ipplan.usable(netaddr.IPNetwork("192.168.1.0/29"))
    assert (str(hosts[0]), str(hosts[-1])) == ("192.168.1.1", "192.168.1.6")


def _site(write_site, text):
    return sitefile.load(write_site(text)).site


def test_site_allocation_skips_gateway_bootstrap_dns_and_explicit(write_site):
    text = BASE_SITE.replace("ip: 192.168.10.11", "ip: 192.168.10.2").replace("dns: [192.168.10.1]",
                                                                              "dns: [192.168.10.3, 192.168.10.4]")
    text = text.replace("    ip: 192.168.10.12\n", "")
    site = _site(write_site, text)
    # free after .1 gateway, .2 n1, .3/.4 DNS, .5 bootstrap -> .6 for n2, .7 for n3 (hostname order)
    assert ipplan.allocate(site) == {"n2": IP("192.168.10.6"), "n3": IP("192.168.10.7")}


def test_pool_limits_allocation(write_site):
    text = BASE_SITE.replace("    dhcp: own\n", "    dhcp: own\n    pool: {first: 192.168.10.200, size: 5}\n")
    plan = make_plan(_site(write_site, text))
    assert plan.node("n3").ip == "192.168.10.200" and plan.node("n3").ip_allocated
    assert plan.node("n1").ip == "192.168.10.11" and not plan.node("n1").ip_allocated


def test_pool_too_small_is_a_site_error(write_site):
    text = BASE_SITE.replace("    dhcp: own\n", "    dhcp: own\n    pool: {first: 192.168.10.254, size: 1}\n")
    text = text.replace("    ip: 192.168.10.12\n", "")
    from installer.errors import SiteInvalid

    with pytest.raises(SiteInvalid) as info:
        sitefile.load(write_site(text))
    assert [p.field for p in info.value.errors] == ["networks.management.pool"]


def test_allocation_is_deterministic(write_site):
    site = _site(write_site, BASE_SITE.replace("    ip: 192.168.10.12\n", ""))
    assert make_plan(site).as_dict() == make_plan(site).as_dict()


def test_write_pins_addresses_keeping_comments_and_order(write_site):
    text = BASE_SITE.replace("  - hostname: n3\n", "  # the third server, rack B\n  - hostname: n3\n")
    path = write_site(text)
    allocated = {n.hostname: n.ip for n in make_plan(sitefile.load(path).site).nodes if n.ip_allocated}
    assert allocated == {"n3": "192.168.10.2"}
    assert sitefile.write_addresses(path, allocated) == ["n3"]
    after = path.read_text()
    assert "  # the third server, rack B\n" in after
    assert "    mac: 52:54:00:00:00:03\n    ip: 192.168.10.2\n    roles:" in after
    # nothing else moved: removing the new line gives back the original text
    assert after.replace("    ip: 192.168.10.2\n", "") == text
    # a second write has nothing to do
    assert sitefile.write_addresses(path, allocated) == []


def test_adding_a_node_never_moves_a_pinned_address(write_site):
    path = write_site(BASE_SITE.replace("    ip: 192.168.10.12\n", ""))
    first = make_plan(sitefile.load(path).site)
    sitefile.write_addresses(path, {n.hostname: n.ip for n in first.nodes if n.ip_allocated})
    # a new node whose name sorts first would have taken the lowest address
    path.write_text(path.read_text() + """\
  - hostname: a0
    mac: 52:54:00:00:00:0a
    roles: [kvm]
    os_disk: {serial: OS0}
""")
    second = make_plan(sitefile.load(path).site)
    for node in first.nodes:
        assert second.node(node.hostname).ip == node.ip
    assert second.node("a0").ip not in {n.ip for n in first.nodes}
