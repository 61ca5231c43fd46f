"""What the unit tests of installer/ share beyond tests/conftest.py."""

from __future__ import annotations

import pytest

from installer import pxe, sitefile, state
from installer.bootserver import BootServer
from installer.bootstate import INSTALL
from installer.resources import profiles


@pytest.fixture
def boot_server(tmp_path, monkeypatch):
    """A BootServer on the lab profile's boot tree (built in TMP_PATH), every node to install with
    token-NODE as its token; the events it says are kept in its `events` list."""
    monkeypatch.delenv("ONEHCI_STATE_DIR", raising=False)
    (tmp_path / "site.yml").write_text(profiles()["lab"].read_text())
    state.write_json(tmp_path / "state/boot.json", {h: {"state": INSTALL, "token": f"token-{h}", "changed": "x"}
                                                    for h in ("lab1", "lab2", "lab3")})
    loaded = sitefile.load(tmp_path / "site.yml")
    result = pxe.build(loaded, tmp_path / "pxe")
    events = []
    server = BootServer(loaded, result.out, events.append)
    server.events = events
    return server
