"""The lab's OpenNebula stand-in daemon run on 127.0.0.1 for tests: copied from the files
its package ships, run with Debian's python3, with a fake `ssh` that runs the monitoring
probe on this machine (PATH gets fake/bin first, so a test can swap `virsh` or `mountpoint`).
The `standin` fixture (tests/conftest.py) starts daemons and stops them afterwards."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import socket
import subprocess
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pyone

from installer import one, sitefile, state
from installer.lab.standin import packages
from installer.plan import make_plan
from tests.conftest import BASE_SITE

PYTHON = "/usr/bin/python3"  # the lab containers' python3: standard library only
PASSWORD = "s3cret-Pw"

FAKE_SSH = """#!/bin/sh
# stand-in for ssh in these tests: drops options, logs the host, runs the script here
while [ $# -gt 0 ]; do case "$1" in -o) shift 2;; -*) shift;; *) break;; esac; done
host=$1; shift
echo "$host" >> "$(dirname "$0")/probes.log"
if [ "$host" = down ]; then
    echo "ssh: connect to host down port 22: Connection refused" >&2
    exit 255
fi
PATH="$(dirname "$0")/bin:$PATH" FAKE_HOST=$host exec sh -c "$*"
"""
FAKE_VIRSH = """#!/bin/sh
if [ "$FAKE_HOST" = novirsh ]; then
    echo "error: failed to connect to the hypervisor" >&2
    exit 1
fi
echo " Id   Name   State"
"""


def wait_for(check, what: str, timeout: float = 10.0):
    """Poll CHECK until it returns something true; fail with WHAT after TIMEOUT."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Daemon:
    """The stand-in oned as a subprocess, run from a copy of the files the package ships."""

    def __init__(self, root: Path, *extra: str, location: str | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/RPC2"
        self.state = root / "state.json"
        self.auth = root / "one_auth"
        self.log = root / "oned.log"
        self.location = location or str(root / "datastores")
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    def start(self) -> Daemon:
        argv = [PYTHON, "-s", "-E", str(self.root / "lib/oned.py"), "--listen", "127.0.0.1",
                "--port", str(self.port), "--state-file", str(self.state), "--auth-file",
                str(self.auth), "--config", str(self.root / "no-oned.conf"),
                "--datastore-location", self.location, "--probe-user", "",
                "--ssh-command", str(self.root / "fake/ssh"), *self.extra]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd="/")
        wait_for(self._answers, f"the stand-in on port {self.port}")
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the stand-in exited: {self.log.read_text()}")
        try:
            xmlrpc.client.ServerProxy(self.url).one.system.version("x:y")
            return True
        except ConnectionRefusedError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)

    def one(self, session: str = f"oneadmin:{PASSWORD}"):
        return pyone.OneServer(self.url, session=session)

    def raw(self, method: str, *params, session: str = f"oneadmin:{PASSWORD}"):
        proxy = xmlrpc.client.ServerProxy(self.url)
        return getattr(proxy, method)(session, *params)


def standin_daemons(tmp_path: Path) -> Iterator:
    """Start a daemon with tmp state, auth and a fake ssh; stop it afterwards."""
    (tmp_path / "lib").mkdir()
    for path in packages.daemon_files():
        shutil.copy(path, tmp_path / "lib" / path.name)
    (tmp_path / "fake/bin").mkdir(parents=True)
    for rel, text in (("fake/ssh", FAKE_SSH), ("fake/bin/virsh", FAKE_VIRSH)):
        (tmp_path / rel).write_text(text)
        (tmp_path / rel).chmod(0o755)
    (tmp_path / "one_auth").write_text(f"oneadmin:{PASSWORD}\n")
    started: list[Daemon] = []

    def start(*extra: str, location: str | None = None) -> Daemon:
        daemon = Daemon(tmp_path, *extra, location=location).start()
        started.append(daemon)
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            daemon.stop()


# --- a site's cloud registered on a stand-in -----------------------------------------

SITE = BASE_SITE.replace("    size: 100\n", "    size: 100\n    gateway: 192.168.20.1\n    dns: [192.168.20.2, 192.168.20.3]\n")

# virsh fails on a host while fake/broken-HOST exists, with that file's text as its error
FLAG_VIRSH = """#!/bin/sh
flag="$(dirname "$0")/../broken-$FAKE_HOST"
if [ -e "$flag" ]; then cat "$flag" >&2; exit 1; fi
echo " Id   Name   State"
"""


def set_password_file(loaded, password: str) -> None:
    """Write the password where deploy keeps it (state.oneadmin_password_file)."""
    state.write_private(state.oneadmin_password_file(loaded.path), f"{password}\n".encode())


@dataclasses.dataclass
class Cloud:
    daemon: object
    loaded: object
    plan: object
    said: list[str]

    @property
    def client(self):
        return self.daemon.one()

    def register(self, **kwargs) -> one.Report:
        return one.register(self.loaded, self.plan, self.client, self.said.append, **kwargs)

    def break_host(self, host: str, message: str) -> None:
        (self.daemon.root / f"fake/broken-{host}").write_text(message + "\n")

    def mend_host(self, host: str) -> None:
        (self.daemon.root / f"fake/broken-{host}").unlink()


def make_cloud(standin, tmp_path, write_site, monkeypatch) -> Cloud:
    """A stand-in whose datastores live in tmp (written with OpenNebula's double slash), every
    probe passing its mount check, and the test site planned onto that location."""
    for name, text in (("virsh", FLAG_VIRSH), ("mountpoint", "#!/bin/sh\nexit 0\n")):
        (tmp_path / "fake/bin" / name).write_text(text)
        (tmp_path / "fake/bin" / name).chmod(0o755)
    (tmp_path / "ds/datastores").mkdir(parents=True)
    daemon = standin("--monitor-interval", "0.2", location=f"{tmp_path}/ds//datastores")
    loaded = sitefile.load(write_site(SITE))
    plan = make_plan(loaded.site)
    plan = dataclasses.replace(plan, moosefs={**plan.moosefs, "mount": f"{tmp_path}/ds/datastores"})
    monkeypatch.setattr(one, "api_url", lambda _plan: daemon.url)
    set_password_file(loaded, PASSWORD)
    return Cloud(daemon, loaded, plan, [])
