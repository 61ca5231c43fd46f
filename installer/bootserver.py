"""`onehci pxe serve`: dnsmasq (DHCP + TFTP) from the built tree, an HTTP server for
preseeds, scripts and the install callback, and a syslog receiver for the installer's
log; every event is tied to its node and shown live.

Events also go, one JSON object a line, to state/logs/serve-events.jsonl, and each
node's installer log to state/logs/<host>.log.
"""

from __future__ import annotations

import datetime
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from installer import aptcache, netprobe, state
from installer.bootstate import INSTALL, INSTALLED, BootStates
from installer.errors import OnehciError, printable
from installer.i18n import _, ngettext

_DHCP = re.compile(r"(DHCP[A-Z]+|PXE|BOOTP)\((\S+)\) (?:(\d+\.\d+\.\d+\.\d+) )?([0-9a-f]{2}(?::[0-9a-f]{2}){5})(?: (.*))?")
_TFTP_SENT = re.compile(r"sent (\S+) to (\d+\.\d+\.\d+\.\d+)")
_TFTP_MISSING = re.compile(r"file (\S+) not found(?: for (\d+\.\d+\.\d+\.\d+))?")
_MENU_ITEM = re.compile(r"Menu item '([^']+)' selected")
_SYSLOG = re.compile(r"^<\d+>(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d )?(.*)$", re.S)


def _install_steps() -> dict[str, str]:
    """The d-i main-menu steps worth showing, in the order an install runs them, in words."""
    return {"download-installer": _("installer components"), "netcfg": _("network"),
            "partman-base": _("partitioning"), "bootstrap-base": _("base system"), "apt-setup-udeb": _("apt sources"),
            "pkgsel": _("packages"), "grub-installer": _("boot loader"), "finish-install": _("finishing")}


@dataclass(frozen=True)
class Event:
    time: str
    node: str | None
    kind: str
    detail: str

    def line(self) -> str:
        # what a client sent (a URL, a syslog line) may carry terminal escapes: shown escaped
        return printable(f"{self.time[11:19]} {self.node or '-':12} {self.kind:16} {self.detail}")


MAX_CLIENTS = 32  # HTTP connections served at once; more are closed at once (a LAN is not trusted)
IDLE_TIMEOUT = 15.0  # seconds a connection may stay silent


class _HttpServer(http.server.ThreadingHTTPServer):
    """One thread per connection, at most MAX_CLIENTS of them."""

    daemon_threads = True

    def __init__(self, address, handler):
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def _end(child: subprocess.Popen | None) -> None:
    """Stop one of our children: politely, then for good after 10 s."""
    if child is None or child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


class BootServer:
    """The three services of `pxe serve`, their preflight, and their events."""

    def __init__(self, loaded, tree: Path, emit: Callable[[Event], None]):
        from installer.plan import make_plan

        self.loaded = loaded
        self.site = loaded.site
        self.plan = make_plan(loaded.site)
        self.tree = tree
        self.emit_to = emit
        self.states_dir = state.state_dir(loaded.path)
        self.boots = BootStates(self.states_dir)
        self.logs = state.ensure(self.states_dir / "logs")
        self.by_mac = {n.mac: n.hostname for n in self.plan.nodes}
        self.by_ip = {n.ip: n.hostname for n in self.plan.nodes}
        self.dnsmasq: subprocess.Popen | None = None
        self.aptcache: subprocess.Popen | None = None
        self.httpd: http.server.ThreadingHTTPServer | None = None
        self.syslog: socket.socket | None = None
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.log_sources: set[str] = set()

    # -- events ------------------------------------------------------------------------

    def emit(self, node: str | None, kind: str, detail: str) -> None:
        event = Event(_now(), node, kind, detail)
        with self.lock:
            with open(self.logs / "serve-events.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(asdict(event)) + "\n")
            self.emit_to(event)

    # -- preflight -----------------------------------------------------------------------

    def preflight(self, force: bool = False) -> list[str]:
        """Reasons not to start (empty: go). Warnings are emitted as events."""
        boot = self.site.bootstrap
        reasons: list[str] = []
        if os.geteuid() != 0:
            return [_("pxe serve needs root (DHCP and TFTP use ports 67 and 69)")]
        dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        if not Path(dnsmasq).exists():
            return [_("dnsmasq is missing: install it with `apt-get install dnsmasq-base`")]
        if not netprobe.interface_exists(boot.interface):
            return [_("interface {interface} does not exist on this machine (bootstrap.interface in site.yml)")
                    .format(interface=boot.interface)]
        if str(boot.address) not in netprobe.interface_addresses(boot.interface):
            reasons.append(_("{interface} does not carry the bootstrap address {address}: "
                             "add it with `ip addr add {address}/{prefix} dev {interface}`").format(
                interface=boot.interface, address=boot.address, prefix=self.site.networks.management.cidr.prefixlen))
        # as dnsmasq binds them: DHCP on the interface, TFTP on its address
        taken = [port for port, address in ((67, "0.0.0.0"), (69, str(boot.address)))
                 if not netprobe.udp_port_free_on(boot.interface, port, address)]
        if taken:
            reasons.append(ngettext(
                "UDP port {ports} already in use on {interface} (another DHCP or TFTP server on this machine?)",
                "UDP ports {ports} already in use on {interface} (another DHCP or TFTP server on this machine?)",
                len(taken)).format(ports=", ".join(map(str, taken)), interface=boot.interface))
        if not reasons and not netprobe.tcp_port_free(str(boot.address), boot.http_port):
            reasons.append(_("TCP port {port} is in use on {address} (bootstrap.http_port)")
                           .format(port=boot.http_port, address=boot.address))
        if boot.syslog_port in netprobe.udp_ports_in_use({boot.syslog_port}):
            reasons.append(_("UDP port {port} is in use (bootstrap.syslog_port)").format(port=boot.syslog_port))
        if not netprobe.nobody_can_read(self.tree / "tftp"):
            reasons.append(_("dnsmasq serves TFTP as user nobody, who cannot reach {tftp}: "
                             "build the tree where others can read it (e.g. --out /srv/onehci/pxe)")
                           .format(tftp=self.tree / "tftp"))
        if reasons:
            return reasons
        if self.site.networks.management.dhcp == "own":
            self.emit(None, "probe", _("looking for another DHCP server on {interface} (6 s)")
                      .format(interface=boot.interface))
            offers = netprobe.probe_dhcp(boot.interface)
            if offers is None:
                self.emit(None, "warning", _("could not probe for another DHCP server on {interface} "
                                             "(port 68 is taken on this machine)").format(interface=boot.interface))
            elif offers and not force:
                who = ", ".join(_("{server} (offered {address})").format(server=o.server, address=o.offered)
                                for o in offers)
                reasons.append(_("another DHCP server answers on {interface}: {servers}. Set "
                                 "networks.management.dhcp: proxy in site.yml, or use --force if you are sure")
                               .format(interface=boot.interface, servers=who))
            elif offers:
                self.emit(None, "warning", _("another DHCP server answers on {interface}; going on (--force)")
                          .format(interface=boot.interface))
        return reasons

    # -- services -------------------------------------------------------------------------

    def start(self) -> None:
        boot = self.site.bootstrap
        dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        self.dnsmasq = subprocess.Popen(
            [dnsmasq, "--keep-in-foreground", f"--conf-file={self.tree / 'dnsmasq.conf'}", "--log-facility=-"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self._thread(self._read_dnsmasq)
        self.httpd = _HttpServer((str(boot.address), boot.http_port), self._handler())
        self._thread(self.httpd.serve_forever)
        self.syslog = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.syslog.bind((str(boot.address), boot.syslog_port))
        self._thread(self._read_syslog)
        if boot.apt_proxy:
            self._start_apt_cache()
        self.emit(None, "serving", _("DHCP/TFTP on {interface}, HTTP on {address}:{http_port}, "
                                     "installer logs on UDP {syslog_port}; Ctrl-C stops").format(
            interface=boot.interface, address=boot.address, http_port=boot.http_port, syslog_port=boot.syslog_port))

    def _start_apt_cache(self) -> None:
        address = str(self.site.bootstrap.address)
        if aptcache.listening(address):
            self.emit(None, "apt-proxy", _("using the apt-cacher-ng already answering on {address}:{port}")
                      .format(address=address, port=aptcache.PORT))
            return
        self.aptcache = aptcache.start(address, self.site.bootstrap.mirror, self.states_dir / "run")
        self.emit(None, "apt-proxy", _("apt-cacher-ng on {address}:{port} caching {mirror}")
                  .format(address=address, port=aptcache.PORT, mirror=self.site.bootstrap.mirror))
        self._thread(self._read_apt_log)

    def _read_apt_log(self) -> None:
        """Follow apt-cacher-ng's transfer log: the mirror's Release files show a node got that far."""
        path = aptcache.log_path(self.states_dir / "run")
        offset = path.stat().st_size if path.exists() else 0
        while not self.stopping.wait(0.5):
            if not path.exists():
                continue
            with open(path, encoding="utf-8", errors="replace") as fh:
                fh.seek(offset)
                lines = fh.readlines()
                offset = fh.tell()
            for line in lines:
                self.apt_line(line.strip())

    def apt_line(self, line: str) -> None:
        fields = line.split("|")
        if len(fields) == 5 and fields[1] == "O" and fields[4].endswith(("/Release", "/InRelease")):
            self.emit(self.by_ip.get(fields[3]), "mirror", _("{path} through apt-cacher-ng")
                      .format(path=fields[4].split("/", 1)[-1]))

    def _thread(self, target) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self.threads.append(thread)

    def wait(self) -> int:
        """Run until Ctrl-C or SIGTERM (0) or until dnsmasq dies (1)."""
        previous = signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        try:
            while not self.stopping.wait(0.5):
                if self.dnsmasq and self.dnsmasq.poll() is not None:
                    self.emit(None, "error", _("dnsmasq stopped (exit {code})").format(code=self.dnsmasq.returncode))
                    return 1
            return 0
        except KeyboardInterrupt:
            return 0
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.stop()

    def stop(self) -> None:
        self.stopping.set()
        for child in (self.dnsmasq, self.aptcache):
            _end(child)
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        if self.syslog:
            self.syslog.close()
            self.syslog = None

    # -- dnsmasq's log ----------------------------------------------------------------------

    def _read_dnsmasq(self) -> None:
        assert self.dnsmasq and self.dnsmasq.stderr
        for raw in self.dnsmasq.stderr:
            line = raw.rstrip("\n")
            with open(self.logs / "dnsmasq.log", "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
            self.dnsmasq_line(line)

    def dnsmasq_line(self, line: str) -> None:
        """Turn one dnsmasq log line into an event, if it says something about a node."""
        if match := _DHCP.search(line):
            kind, _iface, ip, mac, rest = match.groups()
            node = self.by_mac.get(mac)
            if (rest and "ignored" in rest) or (node is None and kind == "DHCPDISCOVER"):
                self.emit(None, "dhcp-ignored", _("{mac} is not in the site: no answer").format(mac=mac))
            elif node and kind in ("DHCPOFFER", "DHCPACK", "PXE"):
                if ip:
                    self.by_ip.setdefault(ip, node)
                self.emit(node, "dhcp", f"{kind.removeprefix('DHCP').lower()} {ip or ''} ({mac})".replace("  ", " "))
        elif match := _TFTP_SENT.search(line):
            path, ip = match.groups()
            node = self.by_ip.get(ip)
            rel = path.split("/tftp/", 1)[-1]
            self.emit(node, "tftp", rel)
            if node and (rel.startswith("pxelinux.cfg/01-") or rel.endswith("grub/grub.cfg")):
                boot = self.boots.get(node) if node else None
                if boot and boot.state == INSTALLED:
                    self.emit(node, "local-boot", _("installed: its entry boots the local disk"))
        elif match := _TFTP_MISSING.search(line):
            self.emit(self.by_ip.get(match.group(2) or ""), "tftp-missing", match.group(1))
        elif "failed" in line or "error" in line.lower():
            self.emit(None, "dnsmasq", line)

    # -- the installer's syslog ----------------------------------------------------------------

    def _read_syslog(self) -> None:
        while not self.stopping.is_set() and self.syslog:
            try:
                data, (ip, _port) = self.syslog.recvfrom(8192)
            except OSError:
                return
            self.syslog_message(ip, data.decode("utf-8", errors="replace"))

    def syslog_message(self, ip: str, text: str) -> None:
        node = self.by_ip.get(ip)
        match = _SYSLOG.match(text.strip())
        message = match.group(1) if match else text.strip()
        with open(self.logs / f"{node or 'unknown-' + ip}.log", "a", encoding="utf-8") as fh:
            fh.write(message + "\n")
        if ip not in self.log_sources:
            self.log_sources.add(ip)
            self.emit(node, "install", _("installer log arriving from {ip}").format(ip=ip))
        if step := _MENU_ITEM.search(message):
            name = step.group(1)
            steps = _install_steps()
            if name in steps:
                self.emit(node, "install", _("step {step} ({name})").format(step=steps[name], name=name))
        elif "onehci" in message:
            said = message.split("onehci", 1)[1].lstrip(":[]0123456789 ")
            self.emit(node, "install-stopped" if said.startswith("install stopped:") else "install", said)
        elif re.search(r"\b(error|failed)\b", message, re.I) and "DEBUG" not in message:
            self.emit(node, "install-error", message[:200])

    # -- HTTP: preseeds, scripts, callback -------------------------------------------------

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            server_version = "onehci"
            timeout = IDLE_TIMEOUT  # an idle connection is closed, its thread freed

            def log_message(self, *args) -> None:  # events replace the access log
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                client = self.client_address[0]
                node = server.by_ip.get(client)
                if url.path.startswith("/installed/"):
                    return self._callback(url, client)
                rel = url.path.lstrip("/")
                target = (server.tree / "http" / rel).resolve()
                if not str(target).startswith(str((server.tree / "http").resolve()) + "/") or not target.is_file():
                    server.emit(node, "http-missing", url.path)
                    return self._reply(404, b"not found\n")
                if node is None:  # the boot files are for the site's nodes only
                    server.emit(None, "http-refused", _("{path} asked by {client}, which is no node of the site")
                                .format(path=rel, client=client))
                    return self._reply(403, b"refused\n")
                if rel.startswith(("preseed/", "install/")):  # with the node's install token
                    kind = "preseed" if rel.startswith("preseed/") else "settings"
                    host = rel.split("/", 1)[1].rsplit(".", 1)[0]
                    refusal = server.preseed_refusal(host, client, kind)
                    if refusal:
                        server.emit(host, f"{kind}-refused", refusal)
                        return self._reply(403, b"refused\n")
                    server.emit(host, kind, _("{path} fetched by {client}").format(path=rel, client=client))
                elif rel.startswith("image/"):
                    return self._send_image(target, node, rel)
                else:
                    server.emit(node, "http", rel)
                return self._reply(200, target.read_bytes())

            def _send_image(self, target: Path, node: str, rel: str) -> None:
                """The node image, streamed (hundreds of MiB: never whole in memory)."""
                size = target.stat().st_size
                self.connection.settimeout(120)  # a node unpacking under load may pause reading
                server.emit(node, "image", _("sending {path} ({size} MiB)").format(path=rel, size=size >> 20))
                started = time.monotonic()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                try:
                    with open(target, "rb") as fh:
                        shutil.copyfileobj(fh, self.wfile, 1 << 20)
                except OSError as exc:
                    server.emit(node, "image", _("{path} not sent whole: {error}").format(path=rel,
                                                                                           error=exc.strerror or exc))
                    return
                took = time.monotonic() - started
                server.emit(node, "image", _("{path} sent in {seconds} s ({rate} MiB/s)").format(
                    path=rel, seconds=f"{took:.0f}", rate=f"{size / max(took, 0.001) / (1 << 20):.0f}"))

            def _callback(self, url, client: str) -> None:
                host = url.path.rsplit("/", 1)[-1]
                token = urllib.parse.parse_qs(url.query).get("token", [""])[0]
                if server.by_ip.get(client) != host:
                    server.emit(None, "callback-refused", _("callback for {node} from {client}, which is not its address")
                                .format(node=host, client=client))
                    return self._reply(403, b"refused\n")
                try:
                    server.complete(host, token)
                except OnehciError as exc:
                    server.emit(host, "callback-refused", _("from {client}: {error}").format(client=client, error=exc))
                    return self._reply(403, b"refused\n")
                return self._reply(200, b"ok\n")

            def _reply(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def preseed_refusal(self, host: str, client: str, kind: str = "preseed") -> str:
        """Why HOST's preseed, or its install settings (KIND "settings"), with its install token, is
        not given to CLIENT; "" to give it: only to the node itself (its planned address, or the
        lease DHCP gave its MAC) and only while it is armed for an install."""
        preseed = kind == "preseed"
        if self.by_ip.get(client) != host:
            return (_("{node}'s preseed asked by {client}, which is not {node}'s address") if preseed else
                    _("{node}'s install settings asked by {client}, which is not {node}'s address")
                    ).format(node=host, client=client)
        boot = self.boots.get(host)
        if boot is None or boot.state != INSTALL:
            return (_("{node} is installed, not armed: its preseed is not served "
                      "(`onehci pxe arm {node} SITE` to reinstall)") if preseed else
                    _("{node} is installed, not armed: its install settings are not served "
                      "(`onehci pxe arm {node} SITE` to reinstall)")).format(node=host)
        return ""

    def complete(self, host: str, token: str) -> None:
        """The install-complete callback: switch the node's entries to local boot, then record it
        installed (a failed rebuild of the tree leaves it armed, and says so)."""
        from installer import pxe

        self.boots.complete(host, token, lambda states: pxe.build(self.loaded, self.tree, check=False, states=states))
        self.emit(host, "installed", _("install complete; next network boot goes to the local disk"))
