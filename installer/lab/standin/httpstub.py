#!/usr/bin/python3
"""onehci stand-in for OpenNebula's web services (FireEdge, OneGate, OneFlow): an HTTP
server on the service's port that answers every GET with a page saying it is a
stand-in, so that a lab can check the service is up and reachable. Nothing else.
Standard library only (Debian 12's python3); see docs/standin.md."""

from __future__ import annotations

import argparse
import html
import logging
import re
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger("onehci-standin")


def read_listen(config: Path) -> tuple[str | None, int | None]:
    """host/port from FireEdge's YAML or OneGate's/OneFlow's (':host:' / ':port:')."""
    try:
        text = config.read_text()
    except OSError:
        return None, None
    host = re.search(r"^:?host:\s*['\"]?([^'\"\s#]+)", text, re.MULTILINE)
    port = re.search(r"^:?port:\s*['\"]?(\d+)", text, re.MULTILINE)
    return (host.group(1) if host else None), (int(port.group(1)) if port else None)


def _handler(service: str):
    page = (f"<!DOCTYPE html><html><head><title>{html.escape(service)} (onehci stand-in)</title>"
            f"</head><body><h1>{html.escape(service)}: onehci stand-in</h1>"
            "<p>This is not OpenNebula. It is the onehci rehearsal lab's stand-in, installed "
            "because OpenNebula's repository could not be reached. It only shows that the "
            "service is installed, running and reachable.</p></body></html>").encode()

    class Handler(BaseHTTPRequestHandler):
        server_version = f"onehci-standin-{service.lower()}"

        def do_GET(self) -> None:  # noqa: N802 - the base class's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="onehci stand-in for an OpenNebula web service")
    parser.add_argument("--service", required=True, help="name shown on the page, e.g. FireEdge")
    parser.add_argument("--config", type=Path, help="the service's configuration (host, port)")
    parser.add_argument("--listen", help="bind address (default: the config's host, else 0.0.0.0)")
    parser.add_argument("--port", type=int, help="TCP port (default: the config's port)")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        f"onehci stand-in {args.service.lower()} [%(levelname).1s] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    conf_host, conf_port = read_listen(args.config) if args.config else (None, None)
    address = args.listen or conf_host or "0.0.0.0"
    port = args.port or conf_port
    if port is None:
        parser.error("no --port and none in --config")
    ThreadingHTTPServer.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        server = ThreadingHTTPServer((address, port), _handler(args.service))
    except OSError as err:
        log.error("cannot listen on %s:%d: %s", address, port, err.strerror)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("%s stand-in listening on %s:%d", args.service, address, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
