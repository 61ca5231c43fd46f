#!/usr/bin/python3
"""onehci stand-in for the OpenNebula daemon (oned): the lab's only test double.

It serves, on OpenNebula's port and path (2633, /RPC2), the part of OpenNebula 7.0's
XML-RPC API that onehci calls, with the real signatures, response arrays, error codes
and XML documents; it authenticates oneadmin as oned does, keeps its objects in one
JSON file, and monitors hosts for real over SSH as oneadmin. It exists because
OpenNebula's own repository cannot be reached from the machines onehci is tested on.
See docs/standin.md. Standard library only (Debian 12's python3).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import re
import shlex
import signal
import socket
import socketserver
import sys
import threading
import xmlrpc.client
from pathlib import Path
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

try:
    from . import onedocs as D
    from . import onemonitor as M
    from . import onerules as R
    from . import onestore as S
except ImportError:  # run as a script from the package's directory
    import onedocs as D  # type: ignore[no-redef]
    import onemonitor as M  # type: ignore[no-redef]
    import onerules as R  # type: ignore[no-redef]
    import onestore as S  # type: ignore[no-redef]

ONE_VERSION = "7.0.0"
VERSION = f"{ONE_VERSION} (onehci stand-in)"
log = logging.getLogger("onehci-standin")

DEFAULTS = {"LISTEN_ADDRESS": "0.0.0.0", "PORT": "2633",
            "DATASTORE_LOCATION": "/var/lib/one//datastores"}
# the subset of OpenNebula's XML-RPC API served, each by the method named alike below
API = ("system.version", "user.info", "user.passwd",
       "clusterpool.info", "cluster.allocate", "cluster.info", "cluster.delete",
       "cluster.addhost", "cluster.adddatastore", "cluster.addvnet",
       "hostpool.info", "host.allocate", "host.info", "host.status", "host.delete",
       "datastorepool.info", "datastore.allocate", "datastore.info", "datastore.update",
       "vnpool.info", "vn.allocate", "vn.info", "vn.update",
       "vm.allocate", "vm.deploy", "vm.action", "vm.info",
       "vmpool.info", "vmpool.infoextended")
_SECRET_PARAMS = {"one.user.passwd": {2}}  # positions never logged, besides the session


class Api:
    """one.* methods; each gets the call's parameters after the session, already
    checked against its annotations, and returns the success value or raises OneError."""

    def __init__(self, store: S.Store, monitor: M.Monitor | None) -> None:
        self.store = store
        self.monitor = monitor
        self.methods = {f"one.{name}": getattr(self, name.replace(".", "_")) for name in API}

    # --- the XML-RPC entry point ---------------------------------------------------

    def _dispatch(self, method: str, params: tuple) -> list:
        handler = self.methods.get(method)
        if handler is None:
            raise xmlrpc.client.Fault(-506, f"Method '{method}' not defined")
        if not params or not isinstance(params[0], str) or not _types_fit(handler, params[1:]):
            raise xmlrpc.client.Fault(-501, f"Type error or wrong number of parameters calling "
                                            f"'{method}' (onehci stand-in)")
        log.debug("%s called%s", method, _show_params(method, params))
        if not self.store.authenticate(params[0]):
            return self._failure(method, R.OneError(R.AUTHENTICATION,
                                                    "User couldn't be authenticated, aborting call."))
        try:
            value = handler(*params[1:])
        except R.OneError as err:
            return self._failure(method, err)
        except Exception as err:  # a stand-in bug must still answer as oned would
            log.exception("%s failed inside the stand-in", method)
            return self._failure(method, R.OneError(R.INTERNAL, f"onehci stand-in error: {err}"))
        log.debug("%s result SUCCESS", method)
        return [True, value, 0]

    def _failure(self, method: str, err: R.OneError) -> list:
        message = f"[{method}] {err.text}"
        log.warning("%s result FAILURE %s", method, message)
        # Request::failure_response: success, message, code, object id, replication index
        return [False, message, err.code, err.resp_id, -1]

    def _document(self, render, kind: str, oid: int, **options) -> str:
        with self.store.lock:
            return render(self.store, self.store.get(kind, oid), **options)

    def _pool(self, kind: str, objs=None, **options) -> str:
        with self.store.lock:
            chosen = self.store.pools[kind].values() if objs is None else objs
            return D.pool(self.store, kind, list(chosen), **options)

    # --- system and users ----------------------------------------------------------

    def system_version(self) -> str:
        return VERSION

    def user_info(self, oid: int, decrypt: bool = False) -> str:
        if oid not in (-1, 0):  # -1 is the caller; oneadmin is the only user here
            raise R.no_exists("user", oid)
        with self.store.lock:
            return D.user(self.store)

    def user_passwd(self, oid: int, password: str) -> int:
        return self.store.user_passwd(oid, password)

    # --- clusters ------------------------------------------------------------------

    def clusterpool_info(self) -> str:
        return self._pool("cluster")

    def cluster_allocate(self, name: str) -> int:
        return self.store.cluster_allocate(name)

    def cluster_info(self, oid: int, decrypt: bool = False) -> str:
        return self._document(D.cluster, "cluster", oid)

    def cluster_delete(self, oid: int) -> int:
        return self.store.cluster_delete(oid)

    def cluster_addhost(self, cluster_id: int, host_id: int) -> int:
        return self.store.cluster_add("host", cluster_id, host_id)

    def cluster_adddatastore(self, cluster_id: int, ds_id: int) -> int:
        return self.store.cluster_add("datastore", cluster_id, ds_id)

    def cluster_addvnet(self, cluster_id: int, vnet_id: int) -> int:
        return self.store.cluster_add("vnet", cluster_id, vnet_id)

    # --- hosts ---------------------------------------------------------------------

    def hostpool_info(self) -> str:
        return self._pool("host")

    def host_allocate(self, name: str, im_mad: str, vm_mad: str, cluster_id: int) -> int:
        oid = self.store.host_allocate(name, im_mad, vm_mad, cluster_id)
        self._wake_monitor()  # oned monitors a new host at once, not at the next round
        return oid

    def host_info(self, oid: int, decrypt: bool = False) -> str:
        return self._document(D.host, "host", oid)

    def host_status(self, oid: int, status: int) -> int:
        result = self.store.host_status(oid, status)
        if status == 0:
            self._wake_monitor()
        return result

    def host_delete(self, oid: int) -> int:
        return self.store.host_delete(oid)

    def _wake_monitor(self) -> None:
        if self.monitor is not None:
            self.monitor.wake()

    # --- datastores ----------------------------------------------------------------

    def datastorepool_info(self) -> str:
        return self._pool("datastore")

    def datastore_allocate(self, template: str, cluster_id: int) -> int:
        oid = self.store.ds_allocate(template, cluster_id)
        self._wake_monitor()
        return oid

    def datastore_info(self, oid: int, decrypt: bool = False) -> str:
        return self._document(D.datastore, "datastore", oid)

    def datastore_update(self, oid: int, template: str, mode: int = 0) -> int:
        return self.store.ds_update(oid, template, mode)

    # --- virtual networks ----------------------------------------------------------

    def vnpool_info(self, filter_flag: int, start: int, end: int) -> str:
        if filter_flag < -3:
            raise R.OneError(R.XML_RPC_API, "Incorrect filter_flag.")
        with self.store.lock:
            # every network belongs to oneadmin: a filter on another user finds none
            objs = [] if filter_flag > 0 else [
                v for v in self.store.pools["vnet"].values()
                if start < 0 or (v["id"] >= start and (end < 0 or v["id"] <= end))]
            return D.pool(self.store, "vnet", objs, extended=False)

    def vn_allocate(self, template: str, cluster_id: int) -> int:
        return self.store.vn_allocate(template, cluster_id)

    def vn_info(self, oid: int, decrypt: bool = False) -> str:
        return self._document(D.vnet, "vnet", oid, extended=True)

    def vn_update(self, oid: int, template: str, mode: int = 0) -> int:
        return self.store.vn_update(oid, template, mode)

    # --- virtual machines: placement only, no hypervisor ---------------------------

    def vm_allocate(self, template: str, hold: bool = False) -> int:
        return self.store.vm_allocate(template, hold)

    def vm_deploy(self, oid: int, host_id: int, enforce: bool = False, ds_id: int = -1,
                  nic_template: str = "") -> int:
        if nic_template:
            R.parse(nic_template)  # parsed as oned does; automatic NICs are not modelled
        return self.store.vm_deploy(oid, host_id, enforce, ds_id)

    def vm_action(self, action: str, oid: int) -> int:
        return self.store.vm_action(action, oid)

    def vm_info(self, oid: int, decrypt: bool = False) -> str:
        return self._document(D.vm, "vm", oid, full=True)

    def vmpool_info(self, filter_flag: int, start: int, end: int, state: int,
                    query: str = "") -> str:
        return self._vm_pool(filter_flag, start, end, state)

    def vmpool_infoextended(self, filter_flag: int, start: int, end: int, state: int,
                            query: str = "") -> str:
        return self._vm_pool(filter_flag, start, end, state)

    def _vm_pool(self, filter_flag: int, start: int, end: int, state: int) -> str:
        """Filter -4..-1 or a user id, an id range (-1: open), STATE -2 any, -1 any but
        DONE, else that state; the KEY=VALUE query is not modelled."""
        if filter_flag < -4:
            raise R.OneError(R.XML_RPC_API, "Incorrect filter_flag.")
        if state < -2 or state > 11:  # ALL_VM .. CLONING_FAILURE
            raise R.OneError(R.XML_RPC_API, "Incorrect filter_flag, state")
        with self.store.lock:
            objs = [] if filter_flag > 0 else [
                vm for vm in self.store.pools["vm"].values()
                if (start < 0 or vm["id"] >= start) and (end < 0 or vm["id"] <= end)
                and (state == -2 or (state == -1 and vm["state"] != R.DONE) or vm["state"] == state)]
            return D.pool(self.store, "vm", objs, full=False)


class Scheduler(threading.Thread):
    """The scheduler's part the stand-in has: every INTERVAL seconds, VMs flagged RESCHED
    move to another host of their cluster (onestore.Store.reschedule)."""

    def __init__(self, store: S.Store, interval: float) -> None:
        super().__init__(name="scheduler", daemon=True)
        self.store = store
        self.interval = interval
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.reschedule()
            except Exception:  # a bug here must not end scheduling for good
                log.exception("scheduling round failed")


def _types_fit(handler, params: tuple) -> bool:
    """xmlrpc-c's signature check: the count, and each value's XML-RPC type."""
    try:
        bound = inspect.signature(handler).bind(*params)
    except TypeError:
        return False
    hints = {"int": int, "str": str, "bool": bool}
    for name, value in bound.arguments.items():
        wanted = hints[inspect.signature(handler).parameters[name].annotation]
        if wanted is int and isinstance(value, bool) or not isinstance(value, wanted):
            return False
    return True


def _show_params(method: str, params: tuple) -> str:
    """Like oned's request log: short values, never the session or a password."""
    shown = []
    for position, value in enumerate(params[1:], start=1):
        if position in _SECRET_PARAMS.get(method, set()):
            shown.append("****")
        elif isinstance(value, str):
            first = value.split("\n", 1)[0]
            shown.append(repr(first[:40] + ("..." if len(value) > len(first[:40]) else "")))
        else:
            shown.append(repr(value))
    return (": " + ", ".join(shown)) if shown else ""


# --- the server --------------------------------------------------------------------


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2",)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        log.debug("http %s %s", self.address_string(), format % args)


class _Server(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        log.exception("error serving %s", client_address)


def make_server(address: str, port: int, api: Api) -> _Server:
    _Server.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
    server = _Server((address, port), requestHandler=_Handler, allow_none=False,
                     logRequests=True, encoding="utf-8")
    server.register_instance(api)
    return server


def read_oned_conf(path: Path) -> dict[str, str]:
    """The few oned.conf settings the stand-in honours; the rest of the file is ignored."""
    found: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return found
    for key in DEFAULTS:
        match = re.search(rf'^\s*{key}\s*=\s*"?([^"#\n]*?)"?\s*(#.*)?$', text, re.MULTILINE)
        if match and match.group(1).strip():
            found[key] = match.group(1).strip()
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="oned.py",
        description="onehci stand-in for the OpenNebula daemon: the XML-RPC subset onehci uses, "
                    "for rehearsal labs where OpenNebula's repository is unreachable.")
    parser.add_argument("--config", type=Path, default=Path("/etc/one/oned.conf"),
                        help="oned.conf to read LISTEN_ADDRESS, PORT and DATASTORE_LOCATION from "
                             "(default: %(default)s; a missing file means the defaults)")
    parser.add_argument("--listen", metavar="ADDRESS",
                        help=f"bind address (default: LISTEN_ADDRESS, else {DEFAULTS['LISTEN_ADDRESS']})")
    parser.add_argument("--port", type=int, help=f"TCP port (default: PORT, else {DEFAULTS['PORT']})")
    parser.add_argument("--state-file", type=Path, default=Path("/var/lib/one/standin-state.json"),
                        help="JSON file holding every object (default: %(default)s)")
    parser.add_argument("--auth-file", type=Path,
                        default=Path(os.environ.get("ONE_AUTH", "/var/lib/one/.one/one_auth")),
                        help="oneadmin:PASSWORD file read on the first start "
                             "(default: $ONE_AUTH, else %(default)s)")
    parser.add_argument("--monitor-interval", type=float, default=10.0, metavar="SECONDS",
                        help="seconds between two monitoring rounds (default: %(default)g)")
    parser.add_argument("--datastore-location", metavar="PATH",
                        help="where datastores live, BASE_PATH = PATH/ID "
                             f"(default: DATASTORE_LOCATION, else {DEFAULTS['DATASTORE_LOCATION']})")
    parser.add_argument("--ssh-command", default=shlex.join(M.DEFAULT_SSH),
                        help="command the probe runs as 'COMMAND HOST SCRIPT' (default: %(default)s)")
    parser.add_argument("--probe-user", default="oneadmin",
                        help="user that probes hosts; as root the probe runs under runuser "
                             "(default: %(default)s; '' for the daemon's own user)")
    parser.add_argument("--probe-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="give up on a host's probe after this long (default: %(default)g)")
    parser.add_argument("--sched-interval", type=float, default=1.0, metavar="SECONDS",
                        help="seconds between two scheduler rounds moving VMs flagged RESCHED "
                             "(default: %(default)g)")
    parser.add_argument("--debug", action="store_true", help="log every call")
    parser.add_argument("--version", action="version",
                        version=f"onehci stand-in oned {VERSION}: OpenNebula {ONE_VERSION} XML-RPC subset")
    return parser.parse_args(argv)


def _setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("onehci stand-in oned [%(levelname).1s] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False
    threading.excepthook = lambda hook: log.error(
        "thread %s died: %s", hook.thread.name if hook.thread else "?", hook.exc_value)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _setup_logging(args.debug)
    conf = {**DEFAULTS, **read_oned_conf(args.config)}
    address = args.listen or conf["LISTEN_ADDRESS"]
    port = args.port if args.port is not None else int(conf["PORT"])
    location = args.datastore_location or conf["DATASTORE_LOCATION"]
    try:
        store = S.Store(args.state_file, args.auth_file, location)
    except (OSError, ValueError, KeyError) as err:
        log.error("cannot use the state file %s: %s (move it away to start afresh)",
                  args.state_file, err)
        return 1
    monitor = M.Monitor(store, args.monitor_interval, shlex.split(args.ssh_command),
                        args.probe_user, os.path.normpath(location), args.probe_timeout)
    api = Api(store, monitor)
    try:
        server = make_server(address, port, api)
    except OSError as err:
        log.error("cannot listen on %s:%d: %s", address, port, err.strerror)
        return 1
    if args.probe_user and args.probe_user != M.current_user() and os.geteuid() != 0:
        log.warning("running as %s, not root: hosts are probed as %s, not %s",
                    M.current_user(), M.current_user(), args.probe_user)
    log.info("%s listening on %s:%d/RPC2; state %s; hosts probed every %g s with '%s' "
             "(mount point checked: %s)", VERSION, address, port, args.state_file,
             args.monitor_interval, args.ssh_command, os.path.normpath(location))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    scheduler = Scheduler(store, args.sched_interval)
    monitor.start()
    scheduler.start()
    try:
        server.serve_forever(poll_interval=0.1)  # SIGTERM is answered within 0.1 s
    except KeyboardInterrupt:
        pass
    scheduler.stop()
    monitor.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
