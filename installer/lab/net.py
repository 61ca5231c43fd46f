"""Idempotent helpers around iproute2 (`ip`) for lab networks on this host.

Every create function is safe to call twice (it leaves an existing, matching
device as it is); every delete function is safe on something absent. Failures
raise OnehciError with a one-line message. All of it needs root.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

from installer.errors import OnehciError


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which("ip") is None:
        raise OnehciError("the `ip` command is missing: install iproute2")
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise OnehciError(f"ip {' '.join(args)} failed: {msg[-1] if msg else f'exit {proc.returncode}'}")
    return proc


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise OnehciError(f"not root: {what} needs root")


def _iface(cidr: str) -> ipaddress.IPv4Interface:
    try:
        iface = ipaddress.IPv4Interface(cidr)
    except ValueError as exc:
        raise OnehciError(f"not an IPv4 address with prefix (like 10.73.0.1/24): {cidr!r}") from exc
    if iface.network.prefixlen == 32 and "/" not in cidr:
        raise OnehciError(f"address {cidr!r} needs a prefix length, like 10.73.0.1/24")
    return iface


def link_exists(name: str, netns: str | None = None) -> bool:
    ns = ["-n", netns] if netns else []
    return _ip(*ns, "link", "show", "dev", name, check=False).returncode == 0


def _addresses(name: str, netns: str | None = None) -> list[str]:
    ns = ["-n", netns] if netns else []
    out = _ip(*ns, "-j", "-4", "addr", "show", "dev", name).stdout
    return [f"{a['local']}/{a['prefixlen']}"
            for link in json.loads(out or "[]") for a in link.get("addr_info", [])]


def _set_address(name: str, cidr: str | None, netns: str | None = None) -> None:
    if not cidr:
        return
    wanted = str(_iface(cidr))
    if wanted in _addresses(name, netns):
        return
    if netns is None:
        _set_address_check(wanted)
    ns = ["-n", netns] if netns else []
    _ip(*ns, "addr", "add", wanted, "dev", name)


def _set_address_check(cidr: str) -> None:
    addr = str(_iface(cidr).ip)
    if address_in_use(addr):
        raise OnehciError(f"address {addr} is already in use on this host: choose another")


def address_in_use(ip: str) -> bool:
    """Is this IPv4 address configured on some interface of this host (default namespace)?"""
    addr = str(ipaddress.IPv4Address(ip.split("/")[0]))
    out = _ip("-j", "-4", "addr", "show").stdout
    return any(a.get("local") == addr
               for link in json.loads(out or "[]") for a in link.get("addr_info", []))


def _delete_link(name: str, netns: str | None = None) -> None:
    if link_exists(name, netns):
        _need_root(f"deleting {name}")
        ns = ["-n", netns] if netns else []
        _ip(*ns, "link", "del", "dev", name)


# --- bridges -----------------------------------------------------------------

def create_bridge(name: str, cidr: str | None = None) -> None:
    """A Linux bridge, up, with an optional IPv4 address (e.g. "10.73.0.1/24"). No uplink is added."""
    _need_root("creating bridges")
    if cidr and not link_exists(name):
        _set_address_check(cidr)
    if link_exists(name):
        if "bridge" not in _ip("-d", "link", "show", "dev", name).stdout:
            raise OnehciError(f"{name} exists and is not a bridge: choose another name")
    else:
        _ip("link", "add", "name", name, "type", "bridge")
    _set_address(name, cidr)
    _ip("link", "set", "dev", name, "up")


def delete_bridge(name: str) -> None:
    _delete_link(name)


# --- taps (for qemu) -----------------------------------------------------------

def create_tap(name: str, bridge: str) -> None:
    """A persistent tap device, up and attached to `bridge` (qemu opens it with script=no)."""
    _need_root("creating tap devices")
    if not link_exists(bridge):
        raise OnehciError(f"bridge {bridge} does not exist: create it first")
    if not link_exists(name):
        _ip("tuntap", "add", "dev", name, "mode", "tap")
    _ip("link", "set", "dev", name, "master", bridge)
    _ip("link", "set", "dev", name, "up")


def delete_tap(name: str) -> None:
    _delete_link(name)


# --- network namespaces and veth pairs -------------------------------------------

def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def create_netns(name: str) -> None:
    """A named network namespace (/run/netns/NAME) with its loopback up."""
    _need_root("creating network namespaces")
    if not netns_exists(name):
        _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "dev", "lo", "up")


def delete_netns(name: str) -> None:
    if netns_exists(name):
        _need_root("deleting network namespaces")
        _ip("netns", "del", name)


def create_veth(host_end: str, bridge: str, netns: str, ns_end: str = "eth0",
                cidr: str | None = None, gateway: str | None = None) -> None:
    """A veth pair: `host_end` on `bridge`, `ns_end` inside `netns` with an optional address
    and default route. Creates the namespace if needed."""
    _need_root("creating veth pairs")
    if not link_exists(bridge):
        raise OnehciError(f"bridge {bridge} does not exist: create it first")
    create_netns(netns)
    if not link_exists(host_end):
        if link_exists(ns_end, netns):
            raise OnehciError(f"{ns_end} already exists in namespace {netns} without its peer {host_end}")
        _ip("link", "add", "name", host_end, "type", "veth", "peer", "name", ns_end, "netns", netns)
    elif not link_exists(ns_end, netns):
        raise OnehciError(f"{host_end} exists but its peer {ns_end} is not in namespace {netns}")
    _ip("link", "set", "dev", host_end, "master", bridge)
    _ip("link", "set", "dev", host_end, "up")
    _set_address(ns_end, cidr, netns)
    _ip("-n", netns, "link", "set", "dev", ns_end, "up")
    if gateway:
        _ip("-n", netns, "route", "replace", "default", "via", gateway)


def delete_veth(host_end: str) -> None:
    """Deleting one end of a veth pair deletes both."""
    _delete_link(host_end)


# --- small queries and settings used by the node lab -------------------------------

def address_owner(ip: str) -> str | None:
    """The interface of this host (default namespace) that carries this IPv4 address, if any."""
    addr = str(ipaddress.IPv4Address(ip.split("/")[0]))
    out = _ip("-j", "-4", "addr", "show").stdout
    return next((link["ifname"] for link in json.loads(out or "[]")
                 for a in link.get("addr_info", []) if a.get("local") == addr), None)


def set_mac(name: str, mac: str, netns: str | None = None) -> None:
    """Give a device a fixed MAC (the planned one), so nodes look like their site entry."""
    ns = ["-n", netns] if netns else []
    shown = json.loads(_ip(*ns, "-j", "link", "show", "dev", name).stdout or "[{}]")[0]
    if shown.get("address", "").lower() != mac.lower():
        _ip(*ns, "link", "set", "dev", name, "address", mac)
