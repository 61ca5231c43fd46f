"""Looking at the network before `pxe serve` joins it: the interface and its address,
ports already taken, and another DHCP server answering on the interface."""

from __future__ import annotations

import os
import random
import select
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

_SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
_MAGIC = b"\x63\x82\x53\x63"


def interface_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def interface_mac(name: str) -> str:
    return Path("/sys/class/net", name, "address").read_text().strip()


def interface_addresses(name: str) -> list[str]:
    """IPv4 addresses configured on an interface (every one of them, as `ip` lists them)."""
    import subprocess

    proc = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", name], capture_output=True, text=True)
    return [line.split()[3].split("/")[0] for line in proc.stdout.splitlines() if " inet " in line]


def udp_ports_in_use(ports: set[int]) -> set[int]:
    """Which of these UDP ports some socket of this host (this namespace) is bound to."""
    found = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            port = int(line.split()[1].rsplit(":", 1)[1], 16)
            if port in ports:
                found.add(port)
    return found


def udp_port_free_on(interface: str, port: int, address: str = "0.0.0.0") -> bool:
    """Can a server bind UDP `port` on `interface`? A socket of another dnsmasq bound to a
    different interface does not count: the kernel keeps the two apart (SO_BINDTODEVICE)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, interface.encode() + b"\0")
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def tcp_port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class DhcpOffer:
    server: str  # the answering server's identifier (option 54) or source address
    offered: str  # the address it offered


def _discover_packet(mac: str, xid: int) -> bytes:
    chaddr = bytes.fromhex(mac.replace(":", "")) + b"\x00" * 10
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, b"\0" * 4, b"\0" * 4,
                         b"\0" * 4, b"\0" * 4, chaddr, b"\0" * 64, b"\0" * 128)
    options = _MAGIC + bytes([53, 1, 1, 55, 3, 1, 3, 6, 255])
    return header + options


def _parse_offer(data: bytes, xid: int) -> DhcpOffer | None:
    if len(data) < 240 or data[0] != 2 or struct.unpack("!I", data[4:8])[0] != xid or data[236:240] != _MAGIC:
        return None
    offered = socket.inet_ntoa(data[16:20])
    kind, server, i = None, None, 240
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        code, size = data[i], data[i + 1]
        value = data[i + 2:i + 2 + size]
        if code == 53 and value:
            kind = value[0]
        elif code == 54 and size == 4:
            server = socket.inet_ntoa(value)
        i += 2 + size
    if kind != 2:  # DHCPOFFER
        return None
    return DhcpOffer(server or "?", offered)


def probe_dhcp(interface: str, wait: float = 6.0) -> list[DhcpOffer] | None:
    """Broadcast one DHCPDISCOVER on `interface` and collect offers for `wait` seconds (servers
    ping an address before offering it: dnsmasq answered after about 3 s here).
    Offers are read from a packet socket, as DHCP clients do, so an offer is seen whether it
    is broadcast or sent to the offered address, which this host does not have.
    Returns None when the probe cannot run (port 68 taken by a client on this host)."""
    xid = random.getrandbits(32)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    try:
        listener.bind((interface, 0))
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sender.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, interface.encode() + b"\0")
        try:
            sender.bind(("0.0.0.0", 68))
        except OSError:
            return None
        sender.sendto(_discover_packet(interface_mac(interface), xid), ("255.255.255.255", 67))
        offers: list[DhcpOffer] = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([listener], [], [], left)
            if not ready:
                break
            frame = listener.recv(65535)
            if frame[12:14] != b"\x08\x00":  # not IPv4
                continue
            packet = frame[14:]
            header = (packet[0] & 0x0F) * 4
            if len(packet) < header + 8 or packet[9] != 17 or struct.unpack("!H", packet[header + 2:header + 4])[0] != 68:
                continue
            offer = _parse_offer(packet[header + 8:], xid)
            if offer is None:
                continue
            if offer.server == "?":
                offer = DhcpOffer(socket.inet_ntoa(packet[12:16]), offer.offered)
            if offer not in offers:
                offers.append(offer)
        return offers
    finally:
        sender.close()
        listener.close()


def nobody_can_read(path: Path) -> bool:
    """dnsmasq drops to user nobody: every parent must be searchable by others."""
    path = path.resolve()
    for part in [path, *path.parents]:
        mode = os.stat(part).st_mode
        if not mode & 0o001:
            return False
    return True
