"""`onehci pxe serve --json` as a child process of a test, its events collected by a thread."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


class Server:
    """`onehci pxe serve --json` as a child process, its events collected by a thread."""

    def __init__(self, site: Path):
        env = {**os.environ, "ONEHCI_STATE_DIR": str(site.parent / "state")}
        self.proc = subprocess.Popen([sys.executable, "-m", "installer", "pxe", "serve", "--json", str(site)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.events: list[dict] = []
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_event(self, node, kind, contains="", timeout=60.0, after=0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events[after:]:
                if event["node"] == node and event["kind"] == kind and contains in event["detail"]:
                    return event
            if self.proc.poll() is not None:
                raise AssertionError(f"pxe serve exited {self.proc.returncode}: {''.join(self.lines)[-2000:]}")
            time.sleep(0.25)
        seen = "\n".join(f"  {e['node']} {e['kind']} {e['detail']}" for e in self.events[-25:])
        raise AssertionError(f"no event {node} {kind} {contains!r} within {timeout:.0f} s; last events:\n{seen}")

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(30)


@contextlib.contextmanager
def serving(site: Path):
    """`pxe serve` of SITE for the time of the block, up once it says `serving`; it must stop cleanly."""
    srv = Server(site)
    try:
        srv.wait_event(None, "serving", timeout=60)
        yield srv
    finally:
        assert srv.stop() == 0
