"""`pxe serve` pieces that need no network: turning dnsmasq's log and the installer's
syslog into per-node events, and the install callback."""

from __future__ import annotations

import json

import pytest

from installer.bootstate import INSTALL, INSTALLED, BootStates
from installer.errors import OnehciError


@pytest.fixture
def server(boot_server):
    return boot_server


def kinds(server):
    return [(e.node, e.kind) for e in server.events]


def test_dhcp_lines_become_node_events(server):
    server.dnsmasq_line("dnsmasq-dhcp[42]: 311 DHCPDISCOVER(onehci-unit0) 52:54:00:71:00:12 ")
    server.dnsmasq_line("dnsmasq-dhcp[42]: 311 DHCPOFFER(onehci-unit0) 10.71.0.12 52:54:00:71:00:12 ")
    server.dnsmasq_line("dnsmasq-dhcp[42]: 311 DHCPACK(onehci-unit0) 10.71.0.12 52:54:00:71:00:12 lab2")
    assert kinds(server) == [("lab2", "dhcp"), ("lab2", "dhcp")]
    assert server.events[0].detail == "offer 10.71.0.12 (52:54:00:71:00:12)"


def test_unknown_mac_is_reported_as_ignored(server):
    server.dnsmasq_line("dnsmasq-dhcp[42]: 977 DHCPDISCOVER(onehci-unit0) 52:54:00:de:ad:01 ignored")
    assert kinds(server) == [(None, "dhcp-ignored")]
    assert "52:54:00:de:ad:01 is not in the site" in server.events[0].detail


def test_tftp_lines_and_local_boot(server):
    out = str(server.tree / "tftp")
    server.dnsmasq_line(f"dnsmasq-tftp[42]: sent {out}/pxelinux.0 to 10.71.0.11")
    server.dnsmasq_line(f"dnsmasq-tftp[42]: sent {out}/pxelinux.cfg/01-52-54-00-71-00-11 to 10.71.0.11")
    assert kinds(server) == [("lab1", "tftp"), ("lab1", "tftp")]
    server.complete("lab1", "token-lab1")
    server.dnsmasq_line(f"dnsmasq-tftp[42]: sent {out}/pxelinux.cfg/01-52-54-00-71-00-11 to 10.71.0.11")
    assert kinds(server)[-3:] == [("lab1", "installed"), ("lab1", "tftp"), ("lab1", "local-boot")]


def test_installer_syslog_shows_steps_and_is_kept_per_node(server):
    server.syslog_message("10.71.0.13", "<13>Nov 26 05:00:01 main-menu[301]: INFO: Menu item 'partman-base' selected")
    server.syslog_message("10.71.0.13", "<13>Nov 26 05:00:02 onehci: os_disk serial lab3-os is /dev/vda")
    server.syslog_message("10.71.0.13", "<13>Nov 26 05:00:03 anna[12]: DEBUG: retrieving foo")
    assert kinds(server) == [("lab3", "install")] * 3
    assert [e.detail for e in server.events] == ["installer log arriving from 10.71.0.13",
                                                 "step partitioning (partman-base)",
                                                 "os_disk serial lab3-os is /dev/vda"]
    log = (server.logs / "lab3.log").read_text().splitlines()
    assert log[-1] == "anna[12]: DEBUG: retrieving foo"


def test_callback_with_wrong_token_changes_nothing(server):
    entry = server.tree / "tftp/pxelinux.cfg/01-52-54-00-71-00-12"
    before = entry.read_text()
    with pytest.raises(OnehciError):
        server.complete("lab2", "token-lab1")
    assert entry.read_text() == before
    assert BootStates(server.states_dir).get("lab2").state == INSTALL


def test_events_are_logged_as_json_lines(server):
    server.complete("lab3", "token-lab3")
    lines = (server.logs / "serve-events.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    assert last["node"] == "lab3" and last["kind"] == "installed"
    assert BootStates(server.states_dir).get("lab3").state == INSTALLED
    assert "token-lab3" not in (server.logs / "serve-events.jsonl").read_text()


def test_preflight_refuses_a_missing_interface(server):
    reasons = server.preflight()
    assert reasons == ["interface onehci-unit0 does not exist on this machine (bootstrap.interface in site.yml)"]


def test_release_fetched_through_the_apt_cache_is_an_event(server):
    server.apt_line("1795669096|O|149482|10.71.0.12|debrep/dists/bookworm/Release")
    server.apt_line("1795669096|I|149506|10.71.0.12|debrep/dists/bookworm/Release")
    server.apt_line("1795669096|O|1000|10.71.0.12|debrep/pool/main/x/x.deb")
    assert kinds(server) == [("lab2", "mirror")]
    assert server.events[0].detail == "dists/bookworm/Release through apt-cacher-ng"
