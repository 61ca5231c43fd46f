"""The site model, format 1: one typed, strict description of a cluster.

Field-level rules (types, formats, normalisation) live here; rules that compare
fields with each other live in installer/checks.py. Loading from YAML with line
numbers is installer/sitefile.py.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
import zoneinfo
from dataclasses import dataclass
from typing import Annotated, Literal

import netaddr
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, field_validator

from installer.i18n import _

ROLES = ("frontend", "kvm", "mfs_master", "mfs_metalogger", "mfs_chunkserver")
Role = Literal["frontend", "kvm", "mfs_master", "mfs_metalogger", "mfs_chunkserver"]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_MAC = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_LOCALE = re.compile(r"^[a-z]{2,3}_[A-Z]{2}(\.UTF-8)?$")
_KEYMAP = re.compile(r"^[a-z]{2,8}(-[a-z0-9]+)?$")
# what udev itself puts in a /dev/disk/by-id name (others become '_' or \xNN escapes)
_BY_ID_NAME = re.compile(r"[A-Za-z0-9#+:=@_][A-Za-z0-9#+.:=@_-]{0,254}")
# a mirror's path: RFC 3986 unreserved characters, '/', '%' escapes and a few sub-delimiters;
# no quote, space, brace, '$' or backquote reaches a shell, a template or a configuration line
_URL_PATH = re.compile(r"(/[A-Za-z0-9._~%+,=@:-]*)*")
_CONSOLE = re.compile(r"tty[A-Za-z]*[0-9]+(,[0-9]+[noe]?[5-8]?)?")
_SHA512_CRYPT = re.compile(r"^\$6\$(rounds=\d{4,9}\$)?[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}$")
_YESCRYPT = re.compile(r"^\$y\$[./0-9A-Za-z]+\$[./0-9A-Za-z]{1,86}\$[./0-9A-Za-z]{43}$")
_SERIAL = re.compile(r"^[A-Za-z0-9_.:+-]{1,64}$")
_BY_ID = "/dev/disk/by-id/"
_SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                  "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")


def _type_name(value: object) -> str:
    names = {bool: "true/false", int: _("a number"), float: _("a number"), dict: _("a mapping"),
             list: _("a list"), type(None): _("nothing")}
    return names.get(type(value), type(value).__name__)


def _shown(text: str, limit: int = 60) -> str:
    """A value as an error message shows it: cut short (a file that is not a site must not be
    echoed whole)."""
    return text if len(text) <= limit else text[:limit] + "..."


def _need_str(value: object, what: str) -> str:
    """VALUE as text; WHAT (translated) says what was expected."""
    if not isinstance(value, str):
        raise ValueError(_("expected {expected}, got {found}").format(expected=what, found=_type_name(value)))
    return value.strip()


# --- scalar types -------------------------------------------------------------------

def _parse_ip(value: object) -> netaddr.IPAddress:
    if isinstance(value, netaddr.IPAddress):  # already parsed (models built in code)
        return value
    text = _need_str(value, _("an IPv4 address"))
    try:
        return netaddr.IPAddress(text, version=4, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError):
        raise ValueError(_("'{value}' is not an IPv4 address").format(value=text)) from None


def _parse_network(value: object) -> netaddr.IPNetwork:
    if isinstance(value, netaddr.IPNetwork):
        return value
    text = _need_str(value, _("a network in CIDR form like 192.168.10.0/24"))
    if "/" not in text:
        raise ValueError(_("'{value}' needs a prefix length, like {value}/24").format(value=text))
    try:
        net = netaddr.IPNetwork(text, version=4)
        netaddr.IPAddress(text.split("/")[0], version=4, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError):
        raise ValueError(_("'{value}' is not an IPv4 network in CIDR form").format(value=text)) from None
    if net.ip != net.network:
        raise ValueError(_("'{value}' has host bits set; the network is {network}").format(
            value=text, network=net.cidr))
    if net.prefixlen > 30:
        raise ValueError(_("'{value}' is too small: a /{prefix} has no room for hosts").format(
            value=text, prefix=net.prefixlen))
    for special, kind in _SPECIAL_NETWORKS:
        if net in special or special in net:
            raise ValueError(_special_network(kind).format(value=text))
    return net


_SPECIAL_NETWORKS = [(netaddr.IPNetwork("0.0.0.0/8"), "this"), (netaddr.IPNetwork("127.0.0.0/8"), "loopback"),
                     (netaddr.IPNetwork("224.0.0.0/4"), "multicast"), (netaddr.IPNetwork("240.0.0.0/4"), "reserved")]


def _special_network(kind: str) -> str:
    """The whole sentence refusing a special network (translated when it is said)."""
    return {"this": _("'{value}' is 'this network' (0.0.0.0/8), not a network of servers"),
            "loopback": _("'{value}' is loopback (127.0.0.0/8), not a network of servers"),
            "multicast": _("'{value}' is multicast (224.0.0.0/4), not a network of servers"),
            "reserved": _("'{value}' is reserved (240.0.0.0/4), not a network of servers")}[kind]


def _parse_mac(value: object) -> str:
    text = _need_str(value, _("a MAC address like 52:54:00:12:34:56")).lower()
    if not _MAC.fullmatch(text):
        raise ValueError(_("'{value}' is not a MAC address (six pairs of hex digits separated by ':' or '-')")
                         .format(value=_shown(text)))
    mac = text.replace("-", ":")
    if int(mac[:2], 16) & 1:
        raise ValueError(_("'{value}' is a multicast address, not a network card's").format(value=mac))
    if mac == "00:00:00:00:00:00":
        raise ValueError(_("00:00:00:00:00:00 is no network card's address (a placeholder? run `onehci discover`)"))
    return mac


def _parse_hostname(value: object) -> str:
    text = _need_str(value, _("a host name"))
    if not _LABEL.fullmatch(text) or text.isdigit():
        raise ValueError(_("'{value}' is not a valid host name: use 1-63 lowercase letters, digits and '-', not "
                           "starting or ending with '-'").format(value=_shown(text)))
    return text


def _parse_domain(value: object) -> str:
    text = _need_str(value, _("a DNS domain")).rstrip(".")
    labels = text.split(".")
    if len(text) > 253 or not all(_LABEL.fullmatch(lbl) for lbl in labels):
        raise ValueError(_("'{value}' is not a valid DNS domain").format(value=_shown(text)))
    return text


IPv4 = Annotated[netaddr.IPAddress, PlainValidator(_parse_ip), PlainSerializer(str)]
Network = Annotated[netaddr.IPNetwork, PlainValidator(_parse_network), PlainSerializer(lambda n: str(n.cidr))]
Mac = Annotated[str, PlainValidator(_parse_mac)]
Hostname = Annotated[str, PlainValidator(_parse_hostname)]
Domain = Annotated[str, PlainValidator(_parse_domain)]


@dataclass(frozen=True)
class DiskRef:
    """A disk named in a way that survives reboots and re-cabling: a by-id path or a serial."""

    by_id: str | None = None
    serial: str | None = None

    @property
    def key(self) -> str:
        return self.by_id or f"serial:{self.serial}"

    def __str__(self) -> str:
        return self.by_id or f"serial {self.serial}"

    def to_data(self) -> str | dict:
        return self.by_id if self.by_id else {"serial": self.serial}


def _parse_disk(value: object) -> DiskRef:
    if isinstance(value, DiskRef):
        return value
    if isinstance(value, dict):
        if set(value) != {"serial"}:
            extra = ", ".join(sorted(str(k) for k in value if k != "serial")) or _("nothing")
            raise ValueError(_("a disk given as a mapping takes exactly one key, 'serial' (found: {keys})")
                             .format(keys=extra))
        serial = _need_str(value["serial"], _("a disk serial number"))
        if not _SERIAL.fullmatch(serial):
            raise ValueError(_("'{value}' does not look like a disk serial number").format(value=_shown(serial)))
        return DiskRef(serial=serial)
    text = _need_str(value, _("a /dev/disk/by-id/ path or {serial: ...}"))
    if text.startswith(_BY_ID) and len(text) > len(_BY_ID) and "/" not in text[len(_BY_ID):]:
        if not _BY_ID_NAME.fullmatch(text[len(_BY_ID):]):
            raise ValueError(_("'{value}' is not a name udev makes under {by_id}: those hold only letters, digits "
                               "and # + - . : = @ _ (copy it from `ls /dev/disk/by-id` or `onehci discover`)")
                             .format(value=_shown(text), by_id=_BY_ID))
        return DiskRef(by_id=text)
    # below, {{serial: ...}} is YAML shown as is: its braces are doubled for format()
    if text.startswith("/dev/"):
        raise ValueError(_("'{value}' can name another disk after a reboot; name it by /dev/disk/by-id/... or "
                           "{{serial: ...}} (run `onehci discover` on the server to see them)")
                         .format(value=_shown(text)))
    raise ValueError(_("'{value}' is not a disk: use a /dev/disk/by-id/... path or {{serial: ...}}")
                     .format(value=_shown(text)))


Disk = Annotated[DiskRef, PlainValidator(_parse_disk), PlainSerializer(lambda d: d.to_data())]


def _parse_mirror(value: str) -> str:
    """An http(s) URL whose every part is what a Debian mirror's URL holds: it goes into apt
    sources, the preseed, apt-cacher-ng's backends and the inventory."""
    shown = _shown(value)
    if any(ord(c) < 0x21 or 0x7F <= ord(c) <= 0x9F for c in value):
        raise ValueError(_("'{value}' is not an http:// or https:// mirror URL: it holds a space or a control "
                           "character").format(value=shown))
    parts = urllib.parse.urlsplit(value)
    if "@" in parts.netloc:  # never shown: it may be a password
        raise ValueError(_("a mirror URL with a user name or password is not accepted: every node would get it in "
                           "its apt sources and the preseed is served on the LAN; use a mirror (or proxy) that "
                           "needs none"))
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = 0
    host_ok = bool(host) and all(_LABEL.fullmatch(label) for label in host.split("."))
    if parts.scheme not in ("http", "https") or not host_ok or port == 0 or parts.query or parts.fragment \
            or value.endswith(("?", "#")) or not _URL_PATH.fullmatch(parts.path):
        raise ValueError(_("'{value}' is not an http:// or https:// mirror URL (scheme, host name, port 1-65535, "
                           "and a path of letters, digits and - . _ ~ % + , = @ : /)").format(value=shown))
    return value.rstrip("/")


def _interface_name(value: str) -> str:
    if not _IFNAME.fullmatch(value) or value in (".", ".."):
        raise ValueError(_("'{value}' is not a Linux interface name (1-15 letters, digits, '_', '.', '-'; "
                           "not . or ..)").format(value=_shown(value)))
    return value


def _parse_password_hash(value: object) -> str:
    text = _need_str(value, _("a password hash"))
    if _SHA512_CRYPT.fullmatch(text) or _YESCRYPT.fullmatch(text):
        return text
    raise ValueError(_("is not a SHA-512 ($6$) or yescrypt ($y$) crypt hash; run `onehci hash-password` and paste "
                       "its output"))


def _ssh_fields(blob: bytes) -> list[bytes]:
    """Split an SSH wire-format key blob into its length-prefixed fields (RFC 4253 6.6)."""
    fields, at = [], 0
    while at < len(blob):
        if at + 4 > len(blob):
            raise ValueError("truncated")
        size = int.from_bytes(blob[at:at + 4], "big")
        if size > len(blob) - at - 4:
            raise ValueError("truncated")
        fields.append(blob[at + 4:at + 4 + size])
        at += 4 + size
    return fields


def _parse_ssh_key(value: object) -> str:
    # A structural check of the public key blob (no crypto library at start-up: it costs
    # 0.15 s on every command): base64, fields that fit exactly, the declared type inside.
    text = " ".join(_need_str(value, _("an SSH public key line")).split())
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text):
        raise ValueError(_("this SSH key line holds a control character (in its comment?): copy the .pub file's "
                           "line again"))
    if "PRIVATE KEY" in text:
        raise ValueError(_("this is a private key; give the public key (the .pub file)"))
    parts = text.split(" ")
    if len(parts) < 2 or parts[0] not in _SSH_KEY_TYPES:
        raise ValueError(_("'{value}' is not an SSH public key line (type, base64 key, comment)")
                         .format(value=_shown(text, 40)))
    try:
        fields = _ssh_fields(base64.b64decode(parts[1], validate=True))
        if not fields or fields[0].decode("ascii") != parts[0]:
            raise ValueError("type mismatch")
        if parts[0] == "ssh-ed25519" and (len(fields) != 2 or len(fields[1]) != 32):
            raise ValueError("bad ed25519 key")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError(_("the {kind} key starting '{start}' does not parse; copy the whole line of the .pub file")
                         .format(kind=parts[0], start=parts[1][:16])) from None
    return text


PasswordHash = Annotated[str, PlainValidator(_parse_password_hash)]
InterfaceName = Annotated[str, AfterValidator(_interface_name)]
SshKey = Annotated[str, PlainValidator(_parse_ssh_key)]


# --- the model ----------------------------------------------------------------------

class Strict(BaseModel):
    """Every section refuses unknown keys and never coerces types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Cluster(Strict):
    name: Hostname
    domain: Domain
    timezone: str = "UTC"
    locale: str = "en_US.UTF-8"
    keyboard: str = "us"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(_("'{value}' is not a time zone name like Europe/Paris").format(value=value)) from None
        return value

    @field_validator("locale")
    @classmethod
    def _locale_form(cls, value: str) -> str:
        if not _LOCALE.fullmatch(value):
            raise ValueError(_("'{value}' is not a locale like fr_FR.UTF-8").format(value=_shown(value)))
        return value if value.endswith(".UTF-8") else value + ".UTF-8"

    @field_validator("keyboard")
    @classmethod
    def _keymap_form(cls, value: str) -> str:
        if not _KEYMAP.fullmatch(value):
            raise ValueError(_("'{value}' is not a keyboard layout like fr or us").format(value=_shown(value)))
        return value


class AddressPool(Strict):
    """A run of addresses: `size` addresses starting at `first`."""

    first: IPv4
    size: int = Field(ge=1, le=65536)

    @property
    def last(self) -> netaddr.IPAddress:
        return self.first + (self.size - 1) if int(self.first) + self.size - 1 <= 0xFFFFFFFF else netaddr.IPAddress("255.255.255.255")

    def addresses(self) -> netaddr.IPRange:
        return netaddr.IPRange(self.first, self.last)


class ManagementNetwork(Strict):
    cidr: Network
    gateway: IPv4
    dns: list[IPv4] = Field(min_length=1)
    dhcp: Literal["own", "proxy"] = "own"
    pool: AddressPool | None = None  # where node addresses are allocated; default: the whole network


class VmsNetwork(Strict):
    bridge: InterfaceName
    cidr: Network
    first: IPv4
    size: int = Field(ge=1, le=65536)
    gateway: IPv4 | None = None
    dns: list[IPv4] = []


    def pool(self) -> AddressPool:
        return AddressPool(first=self.first, size=self.size)


class Networks(Strict):
    management: ManagementNetwork
    vms: VmsNetwork


class Bootstrap(Strict):
    address: IPv4
    interface: InterfaceName
    mirror: str = "http://deb.debian.org/debian"
    apt_proxy: bool = True
    http_port: int = Field(default=8080, ge=1, le=65535)  # preseeds and the install callback
    syslog_port: int = Field(default=5514, ge=1, le=65535)  # the installer's log, shown by `pxe serve`
    console: str | None = None  # e.g. ttyS0,115200n8: the installer on a serial console instead of the screen
    # how a node's OS gets on its disk: the site's prepared image (`onehci image build`), or the
    # Debian installer with a preseed (needs the mirror's .udeb files on the day)
    install: Literal["image", "debian-installer"] = "image"

    @field_validator("console")
    @classmethod
    def _console(cls, value: str | None) -> str | None:
        if value is not None and not _CONSOLE.fullmatch(value):
            raise ValueError(_("'{value}' is not a kernel console like ttyS0,115200n8").format(value=_shown(value)))
        return value


    @field_validator("mirror")
    @classmethod
    def _url(cls, value: str) -> str:
        return _parse_mirror(value)


class Access(Strict):
    ssh_authorized_keys: list[SshKey] = Field(min_length=1)
    root_password_hash: PasswordHash | None = None


class Storage(Strict):
    goal: int = Field(default=2, ge=1, le=9)


class OpenNebula(Strict):
    # how the KVM hosts run VMs: `kvm` with the CPU's virtualisation (real servers), `qemu` in
    # software emulation, for hosts that cannot run KVM guests (nested labs, rehearsal machines)
    vm_driver: Literal["kvm", "qemu"] = "kvm"


class Alternative(Strict):
    """Another way to get the same capacity, as a yearly price (rented servers, VMs on demand)."""

    name: str = Field(min_length=1, max_length=60)
    per_year: float = Field(ge=0)

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError(_("'{value}' holds control characters; a name is one line of text")
                             .format(value=_shown(value)))
        return value


class Economics(Strict):
    """What the cloud costs, for the cost per CPU-hour of `onehci report` (docs/report.md)."""

    currency: str = "EUR"  # ISO 4217, printed beside the figures
    purchase: float = Field(gt=0)  # what the servers and switches cost, once
    years: float = Field(gt=0, le=30)  # how long they are used
    hosting_per_year: float = Field(default=0, ge=0)  # power, cooling, rack space
    staff_share: float = Field(default=0, ge=0, le=1)  # the share of one person's working year the cloud takes
    staff_cost_per_year: float = Field(default=0, ge=0)  # what that person's working year costs
    alternatives: list[Alternative] = []

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError(_("'{value}' is not a currency code like EUR").format(value=_shown(value)))
        return value


class Node(Strict):
    hostname: Hostname
    mac: Mac
    ip: IPv4 | None = None
    boot: Literal["uefi", "bios"] = "uefi"
    roles: list[Role] = Field(min_length=1)
    os_disk: Disk
    chunk_disks: list[Disk] = []

    @field_validator("roles")
    @classmethod
    def _roles_once(cls, value: list[str]) -> list[str]:
        repeated = sorted({r for r in value if value.count(r) > 1})
        if repeated:
            raise ValueError(_("role {roles} is listed more than once").format(roles=", ".join(repeated)))
        return value

    def has(self, role: str) -> bool:
        return role in self.roles


class Site(Strict):
    format: Literal[1]
    cluster: Cluster
    networks: Networks
    bootstrap: Bootstrap
    access: Access
    storage: Storage = Storage()
    opennebula: OpenNebula = OpenNebula()
    economics: Economics | None = None
    nodes: list[Node] = Field(min_length=1)

    def with_role(self, role: str) -> list[Node]:
        return [n for n in self.nodes if n.has(role)]

    def node(self, hostname: str) -> Node | None:
        return next((n for n in self.nodes if n.hostname == hostname), None)
