"""One-shot installs: each node's boot state and its install token.

`install`   the node's PXE entries start the Debian installer;
`installed` the installer called back with the node's token: its entries boot the local disk.
A node never seen before starts in `install`. Only `pxe arm` (and rebuild) go back.
"""

from __future__ import annotations

import contextlib
import datetime
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from installer import state
from installer.errors import OnehciError
from installer.i18n import _

INSTALL, INSTALLED = "install", "installed"
_FILE = "boot.json"


@dataclass(frozen=True)
class NodeBoot:
    hostname: str
    state: str
    token: str
    changed: str  # ISO time of the last change

    def public(self) -> dict:
        return {"hostname": self.hostname, "state": self.state, "changed": self.changed}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


class BootStates:
    """The boot states of a site's nodes, kept in the state directory."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / _FILE

    def _load(self) -> dict:
        return state.read_json(self.path, {})

    def ensure(self, hostnames: list[str]) -> dict[str, NodeBoot]:
        """States for these nodes, creating `install` with a fresh token for new ones."""
        with state.locked(self.directory, "boot"):
            data = self._load()
            missing = [h for h in hostnames if h not in data]
            for host in missing:
                data[host] = {"state": INSTALL, "token": secrets.token_urlsafe(24), "changed": _now()}
            if missing or not self.path.exists():
                state.write_json(self.path, data)
        return {h: NodeBoot(h, **data[h]) for h in hostnames}

    def preview(self, hostnames: list[str]) -> dict[str, NodeBoot]:
        """Like ensure(), without writing: new nodes show a placeholder token."""
        data = self._load()
        return {h: NodeBoot(h, **data[h]) if h in data else NodeBoot(h, INSTALL, "NEW-TOKEN", _now())
                for h in hostnames}

    def get(self, hostname: str) -> NodeBoot | None:
        entry = self._load().get(hostname)
        return NodeBoot(hostname, **entry) if entry else None

    def all(self) -> dict[str, NodeBoot]:
        return {h: NodeBoot(h, **e) for h, e in sorted(self._load().items())}

    def arm(self, hostname: str, then: Callable[[dict[str, NodeBoot]], None] = lambda _s: None) -> NodeBoot:
        """Back to `install`, with a new token (an old preseed cannot complete the new install).
        THEN (rebuilding the boot tree) runs with the new states first: they are kept only if it
        succeeds."""
        return self._change(hostname, INSTALL, then)

    def complete(self, hostname: str, token: str,
                 then: Callable[[dict[str, NodeBoot]], None] = lambda _s: None) -> NodeBoot:
        """The installer's callback: when the token matches and the node is armed, mark it
        installed; the token is spent (a new one replaces it). THEN as for arm()."""
        with state.locked(self.directory, "boot"):
            entry = self._load().get(hostname)
            if entry is None or entry["state"] != INSTALL or \
                    not hmac.compare_digest(entry["token"].encode(), token.encode()):
                raise OnehciError(_("install callback for {node} refused: wrong or spent token, or the node "
                                    "is not armed").format(node=hostname))
            return self._change(hostname, INSTALLED, then, locked=True)

    def _change(self, hostname: str, new_state: str, then, locked: bool = False) -> NodeBoot:
        with contextlib.nullcontext() if locked else state.locked(self.directory, "boot"):
            data = self._load()
            data[hostname] = {"state": new_state, "token": secrets.token_urlsafe(24), "changed": _now()}
            then({h: NodeBoot(h, **e) for h, e in data.items()})  # the work first...
            state.write_json(self.path, data)  # ...then the record of it
            return NodeBoot(hostname, **data[hostname])
